-- Argo CD action discovery for kapistrano.dev/Release.
-- pause: offered while spec.paused is not set.
-- resume: offered while paused, by spec.paused or by a canary stop (status.phase Paused).
-- restart: always offered (rolling restart of the services without a version change).
local actions = {}
local paused = obj.spec ~= nil and obj.spec.paused == true
local stopped = obj.status ~= nil and obj.status.phase == "Paused"
actions["pause"] = {["disabled"] = paused}
actions["resume"] = {["disabled"] = not (paused or stopped)}
actions["restart"] = {["disabled"] = false}
return actions
