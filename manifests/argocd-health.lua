-- Argo CD health check for the Holdfast kinds (holdfast.dev/v1alpha1: Repo, Host, Schedule,
-- Backup, Restore, Notifier). Argo CD needs one key per kind in argocd-cm; every key holds this
-- same script, which looks at obj.kind (see argocd-cm.example.yaml).
--
-- Repo, Host, Schedule, Notifier: from status.conditions.
--   no status (or no conditions yet)    Progressing  "Waiting for the controller"
--   status older than the spec          Progressing  (observedGeneration < generation)
--   Stalled=True                        Degraded     its message
--   Ready=True                          Healthy
--   Reconciling=True                    Progressing  its message
--   anything else                       Degraded     the Ready condition's message
-- Backup, Restore (one run each): from status.phase.
--   Succeeded                           Healthy
--   PartiallyFailed, Failed, Missed     Degraded     status.message, else status.reason
--   Pending, Dispatched, Running        Progressing
--   Skipped, Cancelled                  Suspended
--   no status or no phase               Progressing  "Waiting for the controller"
--
-- Written for Argo CD's Lua (5.1, no libraries beyond the basics).

local hs = {}

local function condition(status, wanted)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

local function nonEmpty(s)
  if s ~= nil and s ~= "" then
    return s
  end
  return nil
end

local function fromConditions(obj)
  local status = obj.status
  if status == nil or status.conditions == nil or #status.conditions == 0 then
    hs.status = "Progressing"
    hs.message = "Waiting for the controller"
    return hs
  end
  local generation = obj.metadata and obj.metadata.generation
  if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
    hs.status = "Progressing"
    hs.message = "Waiting for the controller to observe generation " .. generation
    return hs
  end
  local stalled = condition(status, "Stalled")
  if isTrue(stalled) then
    hs.status = "Degraded"
    hs.message = nonEmpty(stalled.message) or nonEmpty(stalled.reason) or "Stalled"
    return hs
  end
  local ready = condition(status, "Ready")
  if isTrue(ready) then
    hs.status = "Healthy"
    hs.message = nonEmpty(ready.message) or "Ready"
    return hs
  end
  local reconciling = condition(status, "Reconciling")
  if isTrue(reconciling) then
    hs.status = "Progressing"
    hs.message = nonEmpty(reconciling.message) or nonEmpty(reconciling.reason) or "Reconciling"
    return hs
  end
  hs.status = "Degraded"
  if ready ~= nil then
    hs.message = nonEmpty(ready.message) or nonEmpty(ready.reason) or "Not ready"
  else
    hs.message = "No Ready condition"
  end
  return hs
end

local function fromPhase(obj)
  local status = obj.status
  if status == nil or status.phase == nil then
    hs.status = "Progressing"
    hs.message = "Waiting for the controller"
    return hs
  end
  local phase = status.phase
  local said = nonEmpty(status.message) or nonEmpty(status.reason)
  if phase == "Succeeded" then
    hs.status = "Healthy"
    hs.message = said or phase
  elseif phase == "PartiallyFailed" or phase == "Failed" or phase == "Missed" then
    hs.status = "Degraded"
    hs.message = said or phase
  elseif phase == "Pending" or phase == "Dispatched" or phase == "Running" then
    hs.status = "Progressing"
    hs.message = phase
    if phase == "Running" and status.progress ~= nil and nonEmpty(status.progress.percent) then
      hs.message = "Running, " .. status.progress.percent
    end
  elseif phase == "Skipped" or phase == "Cancelled" then
    hs.status = "Suspended"
    hs.message = said or phase
  else
    hs.status = "Unknown"
    hs.message = "Unknown phase " .. tostring(phase)
  end
  return hs
end

if obj.kind == "Backup" or obj.kind == "Restore" then
  return fromPhase(obj)
end
return fromConditions(obj)
