-- Resume the rollout: remove the pause request; held at a pauseAfterHosts stop, promote past it.
-- spec.paused (a pause written in Git) is left to Git.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local paused = obj.metadata.annotations["kapistrano.dev/pause"] ~= nil
local canary = obj.spec ~= nil and obj.spec.strategy ~= nil and obj.spec.strategy.pauseAfterHosts ~= nil
local stopped = obj.status ~= nil and obj.status.phase == "Paused"
obj.metadata.annotations["kapistrano.dev/pause"] = nil
if canary and stopped and not paused then
  obj.metadata.annotations["kapistrano.dev/promote"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
end
obj.metadata.annotations["kapistrano.dev/reason"] = "Argo CD action resume"
return obj
