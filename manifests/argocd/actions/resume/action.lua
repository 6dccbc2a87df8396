-- Resume the rollout. Clearing spec.strategy.pauseAfterHosts also releases a canary stop.
if obj.spec == nil then
  obj.spec = {}
end
obj.spec.paused = false
if obj.spec.strategy ~= nil then
  obj.spec.strategy.pauseAfterHosts = nil
end
return obj
