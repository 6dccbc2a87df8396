-- Rolling restart of every host's services without a version change.
-- The operator restarts hosts one at a time whenever this annotation changes.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["kapistrano.dev/restartedAt"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
