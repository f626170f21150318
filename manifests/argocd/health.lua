-- Argo CD health of a QwenThinkingDeployment (serving.qwen-operator.io), read from the
-- kstatus conditions the operator writes (Ready, Reconciling, Stalled):
--   Progressing  no status yet, a generation the operator has not observed yet, or
--                Reconciling=True (creating, scaling, rolling out, a pod being scheduled);
--   Degraded     Stalled=True: a person must act; the message is its reason and message;
--   Suspended    spec.paused is true (and nothing is stalled);
--   Healthy      Ready=True for the current generation.
-- Only Lua's base library is used, so it runs without resource.customizations.useOpenLibs.
local hs = {}

local function condition(ctype)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

-- A condition describes the current spec when it says nothing else or names this generation.
local function current(c)
  return c.observedGeneration == nil or obj.metadata.generation == nil
    or c.observedGeneration == obj.metadata.generation
end

local function describe(c)
  local text = ""
  if c.reason ~= nil then
    text = c.reason
  end
  if c.message ~= nil and c.message ~= "" then
    if text ~= "" then
      text = text .. ": "
    end
    text = text .. c.message
  end
  return text
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" and current(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

if obj.spec ~= nil and obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = "Paused: spec.paused is true, the operator does not change the servers"
  return hs
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "True" and current(ready) then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

local reconciling = condition("Reconciling")
hs.status = "Progressing"
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = describe(reconciling)
elseif ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
