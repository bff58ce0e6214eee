-- Argo CD health of an ai.cxone.io/SkillTrainingJob (gopher-lua, Lua 5.1).
-- Argo CD opens only the base, table and package libraries for an argocd-cm health script:
-- no math, no string library (so no string methods either). Use neither; hack/argocd-lua runs
-- health_test.yaml in that runtime (tests/packaging.rs).
--   status missing, or status.observedGeneration < metadata.generation -> Progressing
--   spec.suspend                                                       -> Suspended
--   phase Failed, Invalid or Cancelled -> Degraded, with the message of the failing condition
--                              (Succeeded=False or Validated=False, else Ready, else status.message)
--   phase Registering with Registered=False for a reason a human must fix (RegistryAuthFailed,
--                              RegistryRejected) -> Degraded, with that condition's message
--   phase Succeeded         -> Healthy
--   anything else           -> Progressing, with status.message
local hs = {}

local function condition(status, type_, value)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ and (value == nil or c.status == value) then
      return c
    end
  end
  return nil
end

-- A number rounded down, as text ("3", not "3.5"), with operators only (there is no math library).
local function whole(n)
  return tostring(n - n % 1)
end

local function number(v)
  if type(v) == "number" then
    return v
  end
  if type(v) == "string" then
    return tonumber(v)
  end
  return nil
end

local generation = number(obj.metadata and obj.metadata.generation) or 0
local status = obj.status
local observed = status ~= nil and number(status.observedGeneration) or nil

if status == nil or observed == nil or observed < generation then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to observe generation " .. whole(generation)
  return hs
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = status.message
  if hs.message == nil or hs.message == "" then
    hs.message = "spec.suspend is true"
  end
  return hs
end

local phase = status.phase
-- A cancelled run is over and produced no model: as unhealthy as a failed one.
if phase == "Failed" or phase == "Invalid" or phase == "Cancelled" then
  hs.status = "Degraded"
  local failing = condition(status, "Succeeded", "False")
    or condition(status, "Validated", "False")
    or condition(status, "Ready", nil)
  if failing ~= nil and failing.message ~= nil and failing.message ~= "" then
    hs.message = failing.message
  elseif status.message ~= nil and status.message ~= "" then
    hs.message = status.message
  else
    hs.message = "phase " .. phase
  end
  return hs
end

if phase == "Registering" then
  local registered = condition(status, "Registered", "False")
  if registered ~= nil and (registered.reason == "RegistryAuthFailed" or registered.reason == "RegistryRejected") then
    hs.status = "Degraded"
    hs.message = registered.message
    return hs
  end
end

if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = status.message
  if hs.message == nil or hs.message == "" then
    hs.message = "training succeeded"
  end
  return hs
end

hs.status = "Progressing"
hs.message = status.message
if hs.message == nil or hs.message == "" then
  if phase ~= nil then
    hs.message = "phase " .. phase
  else
    hs.message = "waiting for the operator"
  end
end
return hs
