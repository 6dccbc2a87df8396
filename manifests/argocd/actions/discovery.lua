-- Argo CD action discovery for kapistrano.dev/Release. Every action is a request (an annotation).
-- pause: offered while no pause request is set.
-- resume: offered while held, by a pause request or at a canary stop (status.phase Paused).
-- promote: offered at a canary stop (spec.strategy.pauseAfterHosts, status.phase Paused).
-- abort: offered while a rollout from status.currentVersion to another version is under way.
-- restart: always offered (rolling restart of the services without a version change).
local actions = {}
local annotations = obj.metadata ~= nil and obj.metadata.annotations or nil
local requested = annotations ~= nil and annotations["kapistrano.dev/pause"] ~= nil
local paused = requested or (obj.spec ~= nil and obj.spec.paused == true)
local stopped = obj.status ~= nil and obj.status.phase == "Paused"
local canary = obj.spec ~= nil and obj.spec.strategy ~= nil and obj.spec.strategy.pauseAfterHosts ~= nil
local current = obj.status ~= nil and obj.status.currentVersion or nil
local rolling = current ~= nil and obj.spec ~= nil and current ~= obj.spec.version
actions["pause"] = {["disabled"] = requested}
actions["resume"] = {["disabled"] = not (requested or stopped)}
actions["promote"] = {["disabled"] = not (canary and stopped and not paused)}
actions["abort"] = {["disabled"] = not rolling}
actions["restart"] = {["disabled"] = false}
return actions
