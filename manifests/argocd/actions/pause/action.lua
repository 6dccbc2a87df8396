-- Pause the rollout: no further host starts publishing until resumed.
-- A request (annotation), not a spec edit, so the next sync of the Git manifest keeps it.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["kapistrano.dev/pause"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
obj.metadata.annotations["kapistrano.dev/reason"] = "Argo CD action pause"
return obj
