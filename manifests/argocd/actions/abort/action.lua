-- Stop the rollout and roll the hosts already on the new version back to status.currentVersion.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["kapistrano.dev/abort"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
obj.metadata.annotations["kapistrano.dev/reason"] = "Argo CD action abort"
return obj
