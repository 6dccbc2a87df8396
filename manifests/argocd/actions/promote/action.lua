-- Go on past the pauseAfterHosts stop (a request: acted on once by the operator).
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["kapistrano.dev/promote"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
obj.metadata.annotations["kapistrano.dev/reason"] = "Argo CD action promote"
return obj
