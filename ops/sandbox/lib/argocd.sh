# shellcheck shell=bash
#
# The cluster side of the kubectl transport: the refresh lock, pausing ArgoCD
# self-heal, scaling the sandbox's Dolibarr to 0, and putting both back.
#
# Every value changed here is first recorded on the object itself, as an
# annotation written in the same patch as the change, so that the change never
# exists without its record. Putting back reads the record from the cluster, not
# from this shell, so the next run, `recover`, or a person can do it after a
# SIGKILL. The EXIT trap puts everything back on every other exit path.

readonly LIFECYCLE_EXIT_CLUSTER=17

readonly ARGOCD_DEFAULT_NAMESPACE="argocd"
readonly ARGOCD_DEFAULT_LOCK_NAME="sandbox-lifecycle"
readonly ARGOCD_DEFAULT_LOCK_MAX_AGE_SECONDS=14400
readonly ARGOCD_ANNOTATION_PREFIX="sandbox-lifecycle.checkpoint"
readonly ARGOCD_SAVED_SYNC_POLICY="${ARGOCD_ANNOTATION_PREFIX}/saved-sync-policy"
readonly ARGOCD_PAUSED_SINCE="${ARGOCD_ANNOTATION_PREFIX}/paused-since"
readonly ARGOCD_SAVED_REPLICAS="${ARGOCD_ANNOTATION_PREFIX}/saved-replicas"
readonly ARGOCD_SCALED_SINCE="${ARGOCD_ANNOTATION_PREFIX}/scaled-to-zero-since"
readonly ARGOCD_DNS_NAME_PATTERN='^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$'
readonly ARGOCD_POLL_SECONDS=0.5

ARGOCD_LOCK_MAX_AGE=0
ARGOCD_LOCK_HOLDER=""
# The controller of the sandbox's Application that must be paused too: "applicationsets NAME"
# or "applications NAME", set by argocd_check_owner.
ARGOCD_OWNER=""

# -- settings -----------------------------------------------------------------------

argocd_validate_environment() {
  ARGOCD_NAMESPACE="${ARGOCD_NAMESPACE:-$ARGOCD_DEFAULT_NAMESPACE}"
  ARGOCD_KUBE_CONTEXT="${ARGOCD_KUBE_CONTEXT:-$SANDBOX_KUBE_CONTEXT}"
  LIFECYCLE_LOCK_NAME="${LIFECYCLE_LOCK_NAME:-$ARGOCD_DEFAULT_LOCK_NAME}"

  if [[ -n "${ARGOCD_APPLICATION:-}" && ! "$ARGOCD_APPLICATION" =~ $ARGOCD_DNS_NAME_PATTERN ]]; then
    lifecycle_usage_error "ARGOCD_APPLICATION is invalid (${ARGOCD_APPLICATION}): set it to the name of the sandbox's ArgoCD Application"
  fi
  if [[ ! "$LIFECYCLE_LOCK_NAME" =~ $ARGOCD_DNS_NAME_PATTERN ]]; then
    lifecycle_usage_error "LIFECYCLE_LOCK_NAME is invalid (${LIFECYCLE_LOCK_NAME}): use lower-case letters, digits, '-' and '.'"
  fi
  case "${ARGOCD_PAUSE_OWNER:-0}" in
    0 | 1) ARGOCD_PAUSE_OWNER="${ARGOCD_PAUSE_OWNER:-0}" ;;
    *) lifecycle_usage_error "ARGOCD_PAUSE_OWNER is invalid (${ARGOCD_PAUSE_OWNER}): set it to 1 to pause the Application's ApplicationSet or parent too, or 0" ;;
  esac
  lifecycle_validate_seconds LIFECYCLE_LOCK_MAX_AGE_SECONDS "$ARGOCD_DEFAULT_LOCK_MAX_AGE_SECONDS" ARGOCD_LOCK_MAX_AGE

  ARGOCD_LOCK_HOLDER="${LIFECYCLE_LOCK_HOLDER:-$(id -un 2>/dev/null || printf unknown)@$(hostname 2>/dev/null || printf unknown)}"
  if [[ "$ARGOCD_LOCK_HOLDER" == *$'\n'* ]]; then
    lifecycle_usage_error "LIFECYCLE_LOCK_HOLDER contains a line break: set it to one line naming who runs the refresh"
  fi
  # The pid and start time make two runs by the same person on the same host distinct.
  ARGOCD_LOCK_HOLDER="${ARGOCD_LOCK_HOLDER} pid $$ at $(lifecycle_timestamp)"
}

# -- cluster helpers ---------------------------------------------------------------------

argocd_get() {
  local side="$1" resource="$2"
  kube_ctl "$side" "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" get "$resource" -o json
}

argocd_patch() {
  local side="$1" resource="$2" type="$3" patch="$4"
  kube_ctl "$side" "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" patch "$resource" --type "$type" -p "$patch" >/dev/null
}

argocd_annotation() {
  local key="$1"
  jq -r --arg key "$key" '.metadata.annotations[$key] // empty'
}

# Fail with `code`, naming `what` and the first line of kubectl's error output.
argocd_fail_kubectl() {
  local code="$1" what="$2" errors="$3"
  lifecycle_fail "$code" "${what}: $(lifecycle_first_error_line "$errors"); check the kubeconfig context and the RBAC listed in README.md"
}

# Print the names of all pods of `workload`, terminating ones included.
argocd_workload_pods() {
  local selector
  selector="$(kube_workload_selector sandbox "$1")" || return 1
  kube_ctl sandbox "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" get pods -l "$selector" -o json | jq -r '.items[].metadata.name'
}

# -- the lock ---------------------------------------------------------------------------

argocd_lease_manifest() {
  local resource_version="${1:-}"
  jq -n --arg name "$LIFECYCLE_LOCK_NAME" --arg namespace "$SANDBOX_NAMESPACE" \
    --arg holder "$ARGOCD_LOCK_HOLDER" --arg version "$resource_version" \
    --arg acquired "$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)" --argjson duration "$ARGOCD_LOCK_MAX_AGE" '
    {apiVersion: "coordination.k8s.io/v1", kind: "Lease",
     metadata: ({name: $name, namespace: $namespace} + (if $version == "" then {} else {resourceVersion: $version} end)),
     spec: {holderIdentity: $holder, acquireTime: $acquired, leaseDurationSeconds: $duration}}'
}

# Take over a lock another run holds. The replace carries the resourceVersion that
# was read, so it fails with Conflict when a third run changed the lock meanwhile.
argocd_lock_break() {
  local version="$1" reason="$2" errors="${LIFECYCLE_WORK}/lock.err"
  lifecycle_log lock "breaking the lock: ${reason}"
  if ! argocd_lease_manifest "$version" |
    kube_ctl sandbox "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" replace -f - >/dev/null 2>"$errors"; then
    lifecycle_fail "$LIFECYCLE_EXIT_LOCKED" \
      "cannot take over lease ${LIFECYCLE_LOCK_NAME}: $(lifecycle_first_error_line "$errors"); another run changed it meanwhile, check who holds it and rerun"
  fi
}

# Create the Lease that marks a refresh of this sandbox as running. Creating is
# atomic on the API server: a second creation fails with AlreadyExists.
argocd_lock_acquire() {
  local errors="${LIFECYCLE_WORK}/lock.err" lease holder acquired version age
  lifecycle_phase_start lock

  if argocd_lease_manifest | kube_ctl sandbox "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" create -f - >/dev/null 2>"$errors"; then
    on_exit_add argocd_lock_release
  elif grep -q AlreadyExists "$errors"; then
    lease="$(argocd_get sandbox "lease/${LIFECYCLE_LOCK_NAME}" 2>"$errors")" ||
      argocd_fail_kubectl "$LIFECYCLE_EXIT_LOCKED" "cannot read lease ${LIFECYCLE_LOCK_NAME}" "$errors"
    holder="$(jq -r '.spec.holderIdentity // "unknown"' <<<"$lease")"
    acquired="$(jq -r '.spec.acquireTime // .metadata.creationTimestamp // empty' <<<"$lease")"
    version="$(jq -r '.metadata.resourceVersion' <<<"$lease")"
    age=$((EPOCHSECONDS - $(date -u -d "${acquired:-@0}" +%s 2>/dev/null || printf 0)))

    if ((LIFECYCLE_BREAK_LOCK == 1)); then
      argocd_lock_break "$version" "--break-lock given; it was held by ${holder} since ${acquired}"
    elif ((age > ARGOCD_LOCK_MAX_AGE)); then
      argocd_lock_break "$version" "held by ${holder} since ${acquired}, ${age}s ago, longer than LIFECYCLE_LOCK_MAX_AGE_SECONDS=${ARGOCD_LOCK_MAX_AGE}"
    else
      lifecycle_fail "$LIFECYCLE_EXIT_LOCKED" \
        "another run holds lease ${LIFECYCLE_LOCK_NAME} in namespace ${SANDBOX_NAMESPACE}: ${holder}, since ${acquired} (${age}s ago); wait for it to end, or rerun with --break-lock if that run is dead (nothing was changed)"
    fi
    on_exit_add argocd_lock_release
  else
    argocd_fail_kubectl "$LIFECYCLE_EXIT_LOCKED" "cannot create lease ${LIFECYCLE_LOCK_NAME} in namespace ${SANDBOX_NAMESPACE}" "$errors"
  fi

  lifecycle_log lock "holding lease ${LIFECYCLE_LOCK_NAME} in namespace ${SANDBOX_NAMESPACE} as ${ARGOCD_LOCK_HOLDER}"
  # The lock is gone again when the run ends, so the phase reports no change.
  lifecycle_phase_done unchanged
}

# Delete the lock if this run still holds it; a lock broken by another run stays.
argocd_lock_release() {
  local holder
  holder="$(argocd_get sandbox "lease/${LIFECYCLE_LOCK_NAME}" 2>/dev/null | jq -r '.spec.holderIdentity // empty')"
  if [[ "$holder" != "$ARGOCD_LOCK_HOLDER" ]]; then
    lifecycle_log_error "$LIFECYCLE_PHASE" "lease ${LIFECYCLE_LOCK_NAME} is now held by '${holder:-nobody}', not by this run: left as it is"
    return 0
  fi
  kube_ctl sandbox "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" delete "lease/${LIFECYCLE_LOCK_NAME}" >/dev/null
}

# -- the owner of the Application -----------------------------------------------------------

# Print "<kind> <name>" of the Application's controlling ApplicationSet or parent
# Application, from its ownerReferences, or nothing.
argocd_owner_of() {
  jq -r '[.metadata.ownerReferences // [] | .[] | select(.kind == "ApplicationSet" or .kind == "Application")]
    | first // empty | "\(.kind) \(.name)"'
}

# Succeed when the ApplicationSet in stdin would not put back a change to the
# sync policy of `application`: its applicationsSync forbids updates, or it ignores
# differences in /spec/syncPolicy.
argocd_appset_keeps_changes() {
  local application="$1"
  jq -e --arg app "$application" '
    (.spec.syncPolicy.applicationsSync // "sync" | IN("create-only", "create-delete"))
    or any(.spec.ignoreApplicationDifferences // [] | .[];
           ((.name // "") | IN("", $app))
           and any(.jsonPointers // [] | .[]; IN("/spec/syncPolicy", "/spec/syncPolicy/automated")))' >/dev/null
}

# Reject an Application whose controller would undo the pause within seconds,
# unless ARGOCD_PAUSE_OWNER=1 requests pausing that controller too. Read-only.
argocd_check_owner() {
  local errors="${LIFECYCLE_WORK}/argocd.err" application owner kind name owner_json
  if [[ -z "${ARGOCD_APPLICATION:-}" ]]; then
    lifecycle_log preflight "no ArgoCD Application set (ARGOCD_APPLICATION): only the replicas of ${SANDBOX_APP_WORKLOAD} are changed"
    return 0
  fi
  application="$(argocd_get argocd "applications.argoproj.io/${ARGOCD_APPLICATION}" 2>"$errors")" ||
    argocd_fail_kubectl "$LIFECYCLE_EXIT_PREFLIGHT" "cannot read Application ${ARGOCD_APPLICATION} in namespace ${ARGOCD_NAMESPACE}" "$errors"

  owner="$(argocd_owner_of <<<"$application")"
  if [[ -z "$owner" ]]; then
    lifecycle_log preflight "Application ${ARGOCD_APPLICATION} has no ApplicationSet or parent Application"
    return 0
  fi
  read -r kind name <<<"$owner"

  if [[ "$kind" == "ApplicationSet" ]]; then
    owner_json="$(argocd_get argocd "applicationsets.argoproj.io/${name}" 2>"$errors")" ||
      argocd_fail_kubectl "$LIFECYCLE_EXIT_PREFLIGHT" "cannot read ApplicationSet ${name}, the owner of Application ${ARGOCD_APPLICATION}" "$errors"
    if argocd_appset_keeps_changes "$ARGOCD_APPLICATION" <<<"$owner_json"; then
      lifecycle_log preflight "Application ${ARGOCD_APPLICATION} belongs to ApplicationSet ${name}, which does not update its sync policy"
      return 0
    fi
    owner="applicationsets.argoproj.io ${name}"
  else
    owner="applications.argoproj.io ${name}"
  fi

  if ((ARGOCD_PAUSE_OWNER == 0)); then
    lifecycle_fail "$LIFECYCLE_EXIT_PREFLIGHT" \
      "Application ${ARGOCD_APPLICATION} is controlled by ${kind} ${name} in namespace ${ARGOCD_NAMESPACE}, which would put its sync policy back within seconds; set ARGOCD_PAUSE_OWNER=1 (setting checkpoint.lifecycle.argocd_pause_owner) to pause ${name} too (nothing was changed)"
  fi
  ARGOCD_OWNER="$owner"
  lifecycle_log preflight "Application ${ARGOCD_APPLICATION} is controlled by ${kind} ${name}, which will be paused too (ARGOCD_PAUSE_OWNER=1)"
}

# -- pause and put back ---------------------------------------------------------------------

# Record the whole spec.syncPolicy of an Application or ApplicationSet in an
# annotation and turn its automation off, in one merge patch. An Application loses
# spec.syncPolicy.automated (so no auto-sync and no self-heal); an ApplicationSet gets
# applicationsSync create-only (so it stops updating its Applications).
argocd_pause() {
  local resource="$1" name="$2" errors="${LIFECYCLE_WORK}/argocd.err" current saved change
  current="$(argocd_get argocd "${resource}/${name}" 2>"$errors")" ||
    argocd_fail_kubectl "$LIFECYCLE_EXIT_CLUSTER" "cannot read ${resource}/${name}" "$errors"
  if [[ -n "$(argocd_annotation "$ARGOCD_SAVED_SYNC_POLICY" <<<"$current")" ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_CLUSTER" \
      "${resource}/${name} already carries a recorded sync policy (${ARGOCD_SAVED_SYNC_POLICY}) that another run left; run recover first"
  fi

  saved="$(jq -c '.spec.syncPolicy // null' <<<"$current")"
  if [[ "$resource" == applicationsets* ]]; then
    change='{"applicationsSync": "create-only"}'
  else
    change='{"automated": null}'
  fi
  if ! argocd_patch argocd "${resource}/${name}" merge "$(jq -n -c --arg saved "$saved" \
    --arg since "$(lifecycle_timestamp)" --arg saved_key "$ARGOCD_SAVED_SYNC_POLICY" \
    --arg since_key "$ARGOCD_PAUSED_SINCE" --argjson change "$change" \
    '{metadata: {annotations: {($saved_key): $saved, ($since_key): $since}}, spec: {syncPolicy: $change}}')" 2>"$errors"; then
    argocd_fail_kubectl "$LIFECYCLE_EXIT_CLUSTER" "cannot pause ${resource}/${name}" "$errors"
  fi
  lifecycle_log "$LIFECYCLE_PHASE" "paused ${resource}/${name}; its sync policy was ${saved}"
}

# Put back the sync policy recorded on an Application or ApplicationSet and drop
# the record, in one JSON patch. Does nothing when there is no record.
argocd_put_back_sync_policy() {
  local resource="$1" name="$2" current saved operations
  current="$(argocd_get argocd "${resource}/${name}")" || return 1
  saved="$(argocd_annotation "$ARGOCD_SAVED_SYNC_POLICY" <<<"$current")"
  if [[ -z "$saved" ]]; then
    return 0
  fi

  operations="$(jq -c --argjson saved "$saved" --arg saved_key "$ARGOCD_SAVED_SYNC_POLICY" \
    --arg since_key "$ARGOCD_PAUSED_SINCE" '
    def pointer(key): "/metadata/annotations/" + (key | gsub("~"; "~0") | gsub("/"; "~1"));
    (if $saved == null then
       (if .spec.syncPolicy == null then [] else [{op: "remove", path: "/spec/syncPolicy"}] end)
     else [{op: "add", path: "/spec/syncPolicy", value: $saved}] end)
    + [{op: "remove", path: pointer($saved_key)}]
    + (if .metadata.annotations[$since_key] == null then [] else [{op: "remove", path: pointer($since_key)}] end)' \
    <<<"$current")"
  argocd_patch argocd "${resource}/${name}" json "$operations" || return 1
  lifecycle_log "$LIFECYCLE_PHASE" "put back the sync policy of ${resource}/${name}: ${saved}"
  ARGOCD_PUT_BACK=$((ARGOCD_PUT_BACK + 1))
}

# Record the replicas of the sandbox's Dolibarr and set them to 0, in one patch.
argocd_scale_down() {
  local errors="${LIFECYCLE_WORK}/scale.err" current replicas
  current="$(argocd_get sandbox "$SANDBOX_APP_WORKLOAD" 2>"$errors")" ||
    argocd_fail_kubectl "$LIFECYCLE_EXIT_CLUSTER" "cannot read ${SANDBOX_APP_WORKLOAD}" "$errors"
  if [[ -n "$(argocd_annotation "$ARGOCD_SAVED_REPLICAS" <<<"$current")" ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_CLUSTER" \
      "${SANDBOX_APP_WORKLOAD} already carries recorded replicas (${ARGOCD_SAVED_REPLICAS}) that another run left; run recover first"
  fi

  replicas="$(jq -r '.spec.replicas // 1' <<<"$current")"
  if ! argocd_patch sandbox "$SANDBOX_APP_WORKLOAD" merge "$(jq -n -c --arg replicas "$replicas" \
    --arg since "$(lifecycle_timestamp)" --arg saved_key "$ARGOCD_SAVED_REPLICAS" --arg since_key "$ARGOCD_SCALED_SINCE" \
    '{metadata: {annotations: {($saved_key): $replicas, ($since_key): $since}}, spec: {replicas: 0}}')" 2>"$errors"; then
    argocd_fail_kubectl "$LIFECYCLE_EXIT_CLUSTER" "cannot scale ${SANDBOX_APP_WORKLOAD} to 0" "$errors"
  fi
  lifecycle_log pause "scaled ${SANDBOX_APP_WORKLOAD} from ${replicas} replicas to 0"
}

argocd_wait_for_no_pods() {
  local deadline=$((EPOCHSECONDS + KUBE_WAIT_SECONDS)) pods
  while true; do
    pods="$(argocd_workload_pods "$SANDBOX_APP_WORKLOAD" 2>/dev/null | paste -s -d ' ' -)" || pods="(unknown)"
    if [[ -z "$pods" ]]; then
      break
    fi
    if ((EPOCHSECONDS >= deadline)); then
      lifecycle_fail "$LIFECYCLE_EXIT_CLUSTER" \
        "the pods of ${SANDBOX_APP_WORKLOAD} still run ${KUBE_WAIT_SECONDS}s after scaling to 0: ${pods}; check what keeps them (LIFECYCLE_KUBE_WAIT_SECONDS sets the wait)"
    fi
    sleep "$ARGOCD_POLL_SECONDS"
  done
  lifecycle_log pause "every pod of ${SANDBOX_APP_WORKLOAD} is gone"
}

# Put back the replicas recorded on the sandbox's Dolibarr and drop the record.
argocd_put_back_replicas() {
  local current saved operations
  current="$(argocd_get sandbox "$SANDBOX_APP_WORKLOAD")" || return 1
  saved="$(argocd_annotation "$ARGOCD_SAVED_REPLICAS" <<<"$current")"
  if [[ -z "$saved" ]]; then
    return 0
  fi

  operations="$(jq -c --argjson saved "$saved" --arg saved_key "$ARGOCD_SAVED_REPLICAS" --arg since_key "$ARGOCD_SCALED_SINCE" '
    def pointer(key): "/metadata/annotations/" + (key | gsub("~"; "~0") | gsub("/"; "~1"));
    [{op: "add", path: "/spec/replicas", value: $saved}, {op: "remove", path: pointer($saved_key)}]
    + (if .metadata.annotations[$since_key] == null then [] else [{op: "remove", path: pointer($since_key)}] end)' \
    <<<"$current")"
  argocd_patch sandbox "$SANDBOX_APP_WORKLOAD" json "$operations" || return 1
  lifecycle_log "$LIFECYCLE_PHASE" "scaled ${SANDBOX_APP_WORKLOAD} back to ${saved} replicas"
  ARGOCD_PUT_BACK=$((ARGOCD_PUT_BACK + 1))
}

argocd_wait_for_rollout() {
  local errors="${LIFECYCLE_WORK}/rollout.err"
  if ! kube_ctl sandbox $((KUBE_WAIT_SECONDS + 10)) rollout status "$SANDBOX_APP_WORKLOAD" \
    --timeout="${KUBE_WAIT_SECONDS}s" >/dev/null 2>"$errors"; then
    lifecycle_fail "$LIFECYCLE_EXIT_CLUSTER" \
      "the rollout of ${SANDBOX_APP_WORKLOAD} did not complete within ${KUBE_WAIT_SECONDS}s: $(lifecycle_first_error_line "$errors"); check its pods (kubectl get pods), the sync policy and replicas are back"
  fi
  lifecycle_log "$LIFECYCLE_PHASE" "the rollout of ${SANDBOX_APP_WORKLOAD} is complete"
}

# Put back everything a run recorded, in the reverse order of pausing: replicas,
# the Application, then its owner. Used by the EXIT trap, `recover` and the start of
# every refresh, so it reads the records from the cluster and never fails the run.
argocd_put_back_all() {
  local status=0 owner kind name application
  argocd_put_back_replicas || status=1
  if [[ -z "${ARGOCD_APPLICATION:-}" ]]; then
    return "$status"
  fi

  argocd_put_back_sync_policy applications.argoproj.io "$ARGOCD_APPLICATION" || status=1
  application="$(argocd_get argocd "applications.argoproj.io/${ARGOCD_APPLICATION}" 2>/dev/null)" || return 1
  owner="$(argocd_owner_of <<<"$application")"
  if [[ -n "$owner" ]]; then
    read -r kind name <<<"$owner"
    argocd_put_back_sync_policy "${kind,,}s.argoproj.io" "$name" || status=1
  fi
  return "$status"
}

# -- hooks of the kubectl transport ----------------------------------------------------------

ARGOCD_PUT_BACK=0

argocd_recover_leftovers() {
  lifecycle_phase_start recover
  ARGOCD_PUT_BACK=0
  if ! argocd_put_back_all; then
    lifecycle_fail "$LIFECYCLE_EXIT_CLUSTER" \
      "cannot put back what an earlier run recorded on ${SANDBOX_APP_WORKLOAD} or Application ${ARGOCD_APPLICATION:-}; check kubectl access and rerun recover"
  fi
  if ((ARGOCD_PUT_BACK == 0)); then
    lifecycle_log recover "nothing to put back: no sync policy or replica count recorded by an earlier run"
    lifecycle_phase_done unchanged
    return 0
  fi
  lifecycle_log recover "put back ${ARGOCD_PUT_BACK} values recorded by an earlier run that did not end cleanly"
  lifecycle_phase_done
}

argocd_begin() {
  argocd_lock_acquire
  argocd_recover_leftovers
}

argocd_recover_command() {
  argocd_lock_acquire
  argocd_recover_leftovers
  if ((ARGOCD_PUT_BACK > 0)); then
    argocd_wait_for_rollout
  fi
}

argocd_quiesce_sandbox() {
  local kind name
  lifecycle_phase_start pause
  # Each put-back is registered before its change: it does nothing without a record.
  if [[ -n "$ARGOCD_OWNER" ]]; then
    read -r kind name <<<"$ARGOCD_OWNER"
    on_exit_add argocd_put_back_sync_policy "$kind" "$name"
    argocd_pause "$kind" "$name"
  fi
  if [[ -n "${ARGOCD_APPLICATION:-}" ]]; then
    on_exit_add argocd_put_back_sync_policy applications.argoproj.io "$ARGOCD_APPLICATION"
    argocd_pause applications.argoproj.io "$ARGOCD_APPLICATION"
  fi
  on_exit_add argocd_put_back_replicas
  argocd_scale_down
  argocd_wait_for_no_pods
  lifecycle_phase_done
}

# Check, right before the restore, that nothing undid the pause.
argocd_check_quiesced() {
  local errors="${LIFECYCLE_WORK}/argocd.err" automated replicas pods
  if [[ -n "${ARGOCD_APPLICATION:-}" ]]; then
    automated="$(argocd_get argocd "applications.argoproj.io/${ARGOCD_APPLICATION}" 2>"$errors" |
      jq -c '.spec.syncPolicy.automated // null')" ||
      argocd_fail_kubectl "$LIFECYCLE_EXIT_RESTORE" "cannot read Application ${ARGOCD_APPLICATION}" "$errors"
    if [[ "$automated" != "null" ]]; then
      lifecycle_fail "$LIFECYCLE_EXIT_RESTORE" \
        "Application ${ARGOCD_APPLICATION} has automated sync again (${automated}) although this run paused it; find what puts it back (an ApplicationSet, a parent Application, a person), then rerun (nothing was changed)"
    fi
  fi

  replicas="$(argocd_get sandbox "$SANDBOX_APP_WORKLOAD" 2>"$errors" | jq -r '.spec.replicas')" ||
    argocd_fail_kubectl "$LIFECYCLE_EXIT_RESTORE" "cannot read ${SANDBOX_APP_WORKLOAD}" "$errors"
  pods="$(argocd_workload_pods "$SANDBOX_APP_WORKLOAD" 2>"$errors" | paste -s -d ' ' -)" ||
    argocd_fail_kubectl "$LIFECYCLE_EXIT_RESTORE" "cannot list the pods of ${SANDBOX_APP_WORKLOAD}" "$errors"
  if [[ "$replicas" != "0" || -n "$pods" ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_RESTORE" \
      "${SANDBOX_APP_WORKLOAD} has ${replicas} replicas and pods '${pods}' although this run scaled it to 0; find what scales it, then rerun (nothing was changed)"
  fi
  lifecycle_log "$LIFECYCLE_PHASE" "self-heal is still off and ${SANDBOX_APP_WORKLOAD} still has 0 replicas"
}

argocd_resume_sandbox() {
  local kind name
  lifecycle_phase_start resume
  argocd_put_back_replicas ||
    lifecycle_fail "$LIFECYCLE_EXIT_CLUSTER" "cannot scale ${SANDBOX_APP_WORKLOAD} back; the EXIT trap retries, else run recover"
  argocd_wait_for_rollout
  if [[ -n "${ARGOCD_APPLICATION:-}" ]]; then
    argocd_put_back_sync_policy applications.argoproj.io "$ARGOCD_APPLICATION" ||
      lifecycle_fail "$LIFECYCLE_EXIT_CLUSTER" "cannot put back the sync policy of Application ${ARGOCD_APPLICATION}; the EXIT trap retries, else run recover"
  fi
  if [[ -n "$ARGOCD_OWNER" ]]; then
    read -r kind name <<<"$ARGOCD_OWNER"
    argocd_put_back_sync_policy "$kind" "$name" ||
      lifecycle_fail "$LIFECYCLE_EXIT_CLUSTER" "cannot put back the sync policy of ${kind}/${name}; the EXIT trap retries, else run recover"
  fi
  lifecycle_phase_done
}
