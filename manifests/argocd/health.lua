-- Argo CD health check for kapistrano.dev/Release (kstatus conditions written by the operator).
-- Order matters: an unobserved generation first, then failure, then pause, then readiness.
local hs = {}

local function find_condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == kind then
      return condition
    end
  end
  return nil
end

local function is_true(condition)
  return condition ~= nil and condition.status == "True"
end

-- The first argument that is a non-empty string (arguments may be nil, so no ipairs).
local function first_text(...)
  for i = 1, select("#", ...) do
    local text = select(i, ...)
    if text ~= nil and text ~= "" then
      return text
    end
  end
  return ""
end

local status = obj.status
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

if status == nil or status.observedGeneration == nil
    or (generation ~= nil and status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "waiting for the operator"
  return hs
end

local stalled = find_condition(status, "Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = first_text(stalled.message, stalled.reason, status.message, "rollout stalled")
  return hs
end

-- The phase, not spec.paused: a paused Release whose hosts are all ready is Ready (as in kstatus).
if status.phase == "Paused" then
  hs.status = "Suspended"
  hs.message = first_text(status.message, "paused")
  return hs
end

local ready = find_condition(status, "Ready")
if is_true(ready) then
  hs.status = "Healthy"
  hs.message = first_text(ready.message, status.message)
  return hs
end

hs.status = "Progressing"
hs.message = first_text(status.message, ready ~= nil and ready.message or nil, "rolling out")
return hs
