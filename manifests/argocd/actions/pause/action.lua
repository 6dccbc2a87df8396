-- Pause the rollout: no further host starts publishing until resumed.
if obj.spec == nil then
  obj.spec = {}
end
obj.spec.paused = true
return obj
