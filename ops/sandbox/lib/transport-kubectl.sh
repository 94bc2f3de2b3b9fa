# shellcheck shell=bash
#
# The kubectl transport: prod and the sandbox run in Kubernetes, and every command
# reaches their pods through `kubectl exec`, never with a TTY. Sourced by
# sandbox-lifecycle.sh; it replaces the transport_* functions only when
# LIFECYCLE_TRANSPORT=kubectl. The ArgoCD, replica and lock steps are in argocd.sh.
#
# `kubectl exec` can end a stream early and still exit 0, so every byte stream that
# matters is checked on arrival: the dump against the sha256 and size computed in
# the prod pod, the documents against a manifest of both trees.

readonly KUBE_DEFAULT_COPY_ATTEMPTS=3
readonly KUBE_DEFAULT_WAIT_SECONDS=300
readonly KUBE_DEFAULT_DUMP_DIR="/tmp"
readonly KUBE_STAGING_NAME=".sandbox-lifecycle-incoming"
readonly KUBE_WORKLOAD_PATTERN='^(pod|po|deployment|deploy|statefulset|sts)/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$'
readonly KUBE_SCALABLE_PATTERN='^(deployment|deploy|statefulset|sts)/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$'
readonly KUBE_NAME_PATTERN='^[A-Za-z_][A-Za-z0-9_$-]*$'

KUBE_COPY_ATTEMPTS=0
KUBE_WAIT_SECONDS=0
KUBE_PROD_DB_POD=""
KUBE_SANDBOX_DB_POD=""
KUBE_PROD_APP_POD=""
KUBE_SANDBOX_APP_POD=""

# Print the value of `<SIDE>_<NAME>`, such as PROD_NAMESPACE for `prod NAMESPACE`.
kube_setting() {
  local variable="${1^^}_$2"
  printf '%s' "${!variable:-}"
}

# Run kubectl on `side`'s context and namespace, bounded by `seconds`.
kube_ctl() {
  local side="$1" seconds="$2"
  shift 2
  lifecycle_bounded "$seconds" kubectl --context "$(kube_setting "$side" KUBE_CONTEXT)" \
    --namespace "$(kube_setting "$side" NAMESPACE)" "$@"
}

# Run a command in `side`'s pod `role` (DB or APP). Without a TTY, so bytes pass
# unchanged, and with stdin only when `stdin` is "-i".
kube_exec() {
  local side="$1" role="$2" seconds="$3" stdin="$4"
  shift 4
  local pod_variable="KUBE_${side^^}_${role}_POD" container
  container="$(kube_setting "$side" "${role}_CONTAINER")"
  local arguments=(exec)
  if [[ "$stdin" == "-i" ]]; then
    arguments+=(-i)
  fi
  arguments+=("${!pod_variable}")
  if [[ -n "$container" ]]; then
    arguments+=(-c "$container")
  fi
  kube_ctl "$side" "$seconds" "${arguments[@]}" -- "$@"
}

# -- validation -----------------------------------------------------------------------

kube_require_workload() {
  local name="$1" pattern="$2" kinds="$3"
  lifecycle_require_env "$name" "set it to ${kinds}/NAME"
  if [[ ! "${!name}" =~ $pattern ]]; then
    lifecycle_usage_error "${name} is invalid (${!name}): set it to ${kinds}/NAME"
  fi
}

kube_require_name() {
  local name="$1" what="$2"
  lifecycle_require_env "$name" "set it to ${what}"
  if [[ ! "${!name}" =~ $KUBE_NAME_PATTERN ]]; then
    lifecycle_usage_error "${name} is invalid (${!name}): set it to ${what}, made of letters, digits, '_', '\$' or '-'"
  fi
}

kube_require_path() {
  local name="$1" what="$2"
  lifecycle_require_env "$name" "set it to ${what}, or pass --db-only"
  if [[ "${!name}" != /* || "${!name}" == *$'\n'* || "${!name}" == "/" ]]; then
    lifecycle_usage_error "${name} is invalid (${!name}): set it to ${what}, an absolute path other than /"
  fi
}

kube_validate_side() {
  local side="${1^^}"
  lifecycle_require_env "${side}_KUBE_CONTEXT" "set it to the kubeconfig context of ${1}"
  lifecycle_require_env "${side}_NAMESPACE" "set it to the namespace of ${1}'s database and Dolibarr"
  kube_require_workload "${side}_DB_WORKLOAD" "$KUBE_WORKLOAD_PATTERN" "pod, deployment or statefulset"
  kube_require_name "${side}_DB_NAME" "the name of ${1}'s database"
  kube_require_name "${side}_DB_ROLE" "the role that connects to ${1}'s database"
  if ((LIFECYCLE_DB_ONLY == 0)); then
    kube_require_workload "${side}_APP_WORKLOAD" "$KUBE_WORKLOAD_PATTERN" "pod, deployment or statefulset"
    kube_require_path "${side}_DOCUMENTS_PATH" "the documents folder inside ${1}'s Dolibarr container"
  fi
}

kubectl_validate_environment() {
  if [[ "$LIFECYCLE_COMMAND" == "recover" ]]; then
    # recover touches only the sandbox's cluster objects.
    LIFECYCLE_DB_ONLY=1
  else
    kube_validate_side prod
  fi
  kube_validate_side sandbox
  # The sandbox's Dolibarr is scaled to 0 during the restore, so it must be scalable.
  kube_require_workload SANDBOX_APP_WORKLOAD "$KUBE_SCALABLE_PATTERN" "deployment or statefulset"

  if [[ "${PROD_KUBE_CONTEXT:-}" == "$SANDBOX_KUBE_CONTEXT" && "${PROD_NAMESPACE:-}" == "$SANDBOX_NAMESPACE" &&
    "${PROD_DB_WORKLOAD:-}" == "$SANDBOX_DB_WORKLOAD" ]]; then
    lifecycle_usage_error "SANDBOX_DB_WORKLOAD is prod's (${PROD_DB_WORKLOAD} in context ${PROD_KUBE_CONTEXT}, namespace ${PROD_NAMESPACE}): point it at the sandbox database"
  fi
  if ((LIFECYCLE_DB_ONLY == 0)) && [[ "$PROD_KUBE_CONTEXT" == "$SANDBOX_KUBE_CONTEXT" &&
    "$PROD_NAMESPACE" == "$SANDBOX_NAMESPACE" && "$PROD_APP_WORKLOAD" == "$SANDBOX_APP_WORKLOAD" ]]; then
    lifecycle_usage_error "SANDBOX_APP_WORKLOAD is prod's (${PROD_APP_WORKLOAD}): point it at the sandbox's Dolibarr"
  fi

  lifecycle_validate_seconds LIFECYCLE_COPY_ATTEMPTS "$KUBE_DEFAULT_COPY_ATTEMPTS" KUBE_COPY_ATTEMPTS
  lifecycle_validate_seconds LIFECYCLE_KUBE_WAIT_SECONDS "$KUBE_DEFAULT_WAIT_SECONDS" KUBE_WAIT_SECONDS
  if [[ -n "${PROD_DB_DUMP_DIR:-}" && "$PROD_DB_DUMP_DIR" != /* ]]; then
    lifecycle_usage_error "PROD_DB_DUMP_DIR is invalid (${PROD_DB_DUMP_DIR}): set it to an absolute folder inside prod's database container"
  fi
  argocd_validate_environment

  # Labels for the messages of the main script, which names documents by these variables.
  PROD_DOCUMENTS_DIR="${PROD_KUBE_CONTEXT:-}/${PROD_NAMESPACE:-}/${PROD_APP_WORKLOAD:-}:${PROD_DOCUMENTS_PATH:-}"
  SANDBOX_DOCUMENTS_DIR="${SANDBOX_KUBE_CONTEXT}/${SANDBOX_NAMESPACE}/${SANDBOX_APP_WORKLOAD}:${SANDBOX_DOCUMENTS_PATH:-}"
}

kubectl_database_label() {
  local side="$1"
  printf 'database %s as %s in %s (context %s, namespace %s)' "$(kube_setting "$side" DB_NAME)" \
    "$(kube_setting "$side" DB_ROLE)" "$(kube_setting "$side" DB_WORKLOAD)" \
    "$(kube_setting "$side" KUBE_CONTEXT)" "$(kube_setting "$side" NAMESPACE)"
}

kubectl_describe_targets() {
  printf 'the sandbox %s' "$(kubectl_database_label sandbox)"
  if ((LIFECYCLE_DB_ONLY == 0)); then
    printf ', and delete or overwrite files in the sandbox documents folder %s until it equals %s' \
      "$SANDBOX_DOCUMENTS_DIR" "$PROD_DOCUMENTS_DIR"
  fi
  printf ', while the sandbox Dolibarr %s is scaled to 0' "$SANDBOX_APP_WORKLOAD"
}

kubectl_required_tools() {
  printf '%s\n' kubectl jq pg_restore timeout sha256sum
}

# -- pods -----------------------------------------------------------------------------

# Print the label selector of a deployment or statefulset, such as "app=db,tier=data".
kube_workload_selector() {
  local side="$1" workload="$2"
  kube_ctl "$side" "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" get "$workload" -o json |
    jq -r '.spec.selector.matchLabels // {} | to_entries | map("\(.key)=\(.value)") | join(",")'
}

# Print the names of the Running pods of `workload` that are not being deleted.
kube_running_pods() {
  local side="$1" workload="$2" selector
  if [[ "$workload" =~ ^(pod|po)/ ]]; then
    kube_ctl "$side" "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" get "$workload" -o json |
      jq -r 'select(.status.phase == "Running" and .metadata.deletionTimestamp == null) | .metadata.name'
    return
  fi
  selector="$(kube_workload_selector "$side" "$workload")"
  if [[ -z "$selector" ]]; then
    printf 'error: %s has no spec.selector.matchLabels\n' "$workload" >&2
    return 1
  fi
  kube_ctl "$side" "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" get pods -l "$selector" \
    --field-selector=status.phase=Running -o json |
    jq -r '.items[] | select(.metadata.deletionTimestamp == null) | .metadata.name'
}

# Store in KUBE_<SIDE>_<ROLE>_POD the one Running pod of the workload that
# <SIDE>_<ROLE>_WORKLOAD names. With `how` "one", more than one pod is an error,
# because a database workload must resolve to the primary only.
kube_resolve_pod() {
  local side="$1" role="$2" how="$3" phase="$4"
  local workload pods=() errors="${LIFECYCLE_WORK}/resolve-${side}-${role}.err"
  workload="$(kube_setting "$side" "${role}_WORKLOAD")"

  # The status line comes from a list, because errexit would end the subshell at a
  # failing kube_running_pods before it prints one.
  if ! mapfile -t pods < <(kube_running_pods "$side" "$workload" 2>"$errors" && printf 'status 0\n' || printf 'status %s\n' "$?"); then
    pods=("status 1")
  fi
  if [[ "${pods[-1]}" != "status 0" ]]; then
    lifecycle_fail "$(kube_exit_code "$phase")" \
      "cannot list the pods of ${workload} in context $(kube_setting "$side" KUBE_CONTEXT), namespace $(kube_setting "$side" NAMESPACE): $(lifecycle_first_error_line "$errors"); check ${side^^}_KUBE_CONTEXT, ${side^^}_NAMESPACE and ${side^^}_${role}_WORKLOAD"
  fi
  unset 'pods[-1]'

  if ((${#pods[@]} == 0)); then
    lifecycle_fail "$(kube_exit_code "$phase")" \
      "${workload} in namespace $(kube_setting "$side" NAMESPACE) has no Running pod; start it, or fix ${side^^}_${role}_WORKLOAD"
  fi
  if [[ "$how" == "one" ]] && ((${#pods[@]} > 1)); then
    lifecycle_fail "$(kube_exit_code "$phase")" \
      "${workload} has ${#pods[@]} Running pods (${pods[*]}) and the database must be reached through one; set ${side^^}_${role}_WORKLOAD to pod/NAME of the primary"
  fi
  printf -v "KUBE_${side^^}_${role}_POD" '%s' "${pods[0]}"
  lifecycle_log "$phase" "${side} ${role,,}: pod ${pods[0]} of ${workload}"
}

kube_exit_code() {
  case "$1" in
    preflight) printf '%s' "$LIFECYCLE_EXIT_PREFLIGHT" ;;
    documents) printf '%s' "$LIFECYCLE_EXIT_DOCUMENTS" ;;
    checkpoint) printf '%s' "$CHECKPOINT_FAIL_CODE" ;;
    *) printf '%s' "$LIFECYCLE_EXIT_UNEXPECTED" ;;
  esac
}

# -- preflight ------------------------------------------------------------------------

# Check in prod's pod that the documents folder exists and is not empty, and in the
# sandbox's pod that the parent of its documents folder exists.
kube_check_documents_paths() {
  local errors="${LIFECYCLE_WORK}/documents-check.err" entry
  entry="$(kube_exec prod APP "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" "" \
    sh -c 'test -d "$1" && ls -A "$1" | head -n 1' sh "$PROD_DOCUMENTS_PATH" 2>"$errors" </dev/null)" || entry=""
  if [[ -z "$entry" ]]; then
    lifecycle_fail "$LIFECYCLE_EXIT_PREFLIGHT" \
      "PROD_DOCUMENTS_PATH ${PROD_DOCUMENTS_PATH} is missing or empty in pod ${KUBE_PROD_APP_POD}, and syncing it would delete every sandbox document: check the path and that its volume is mounted"
  fi

  if ! kube_exec sandbox APP "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" "" \
    sh -c 'test -d "$(dirname -- "$1")"' sh "$SANDBOX_DOCUMENTS_PATH" 2>"$errors" </dev/null; then
    lifecycle_fail "$LIFECYCLE_EXIT_PREFLIGHT" \
      "the parent folder of SANDBOX_DOCUMENTS_PATH ${SANDBOX_DOCUMENTS_PATH} does not exist in pod ${KUBE_SANDBOX_APP_POD}: check the path and the volume mount"
  fi
  lifecycle_log preflight "documents: ${PROD_DOCUMENTS_DIR} -> ${SANDBOX_DOCUMENTS_DIR}"
}

kubectl_preflight() {
  kube_resolve_pod prod DB one preflight
  kube_resolve_pod sandbox DB one preflight
  if ((LIFECYCLE_DB_ONLY == 0)); then
    kube_resolve_pod prod APP any preflight
    kube_resolve_pod sandbox APP any preflight
    kube_check_documents_paths
  fi
  argocd_check_owner
}

# -- databases ------------------------------------------------------------------------

kubectl_psql() {
  local side="$1" seconds="$2" application="$3"
  shift 3
  local environment=("PGAPPNAME=sandbox-lifecycle ${application}")
  if [[ "$side" == "prod" ]]; then
    environment+=("PGOPTIONS=-c default_transaction_read_only=on")
  fi
  kube_exec "$side" DB "$seconds" -i env "${environment[@]}" \
    psql -X -q -A -t -F $'\t' -v ON_ERROR_STOP=1 -U "$(kube_setting "$side" DB_ROLE)" \
    -d "$(kube_setting "$side" DB_NAME)" "$@"
}

kubectl_pg_dump_version() {
  kube_exec prod DB "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" "" pg_dump --version </dev/null
}

# The dump's path inside prod's database container: fixed per run, so that the EXIT
# trap can remove it even when the dump was interrupted.
kube_pod_dump_path() {
  printf '%s/%s.dump' "${PROD_DB_DUMP_DIR:-$KUBE_DEFAULT_DUMP_DIR}" "${LIFECYCLE_WORK##*/}"
}

kube_remove_pod_dump() {
  kube_exec prod DB "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" "" rm -f -- "$(kube_pod_dump_path)" </dev/null 2>/dev/null
}

# Run pg_dump inside prod's database pod into a new private file, then print the
# file's size and sha256 computed there.
# shellcheck disable=SC2016 # the script is expanded by the pod's shell
readonly KUBE_POD_DUMP_SCRIPT='set -eu
umask 077
set -C
: >"$1"
set +C
if ! pg_dump -Fc -Z "$5" --no-owner --no-privileges --snapshot="$2" -U "$3" -d "$4" -f "$1"; then
  rm -f -- "$1"
  exit 1
fi
printf "%s %s\n" "$(wc -c <"$1" | tr -d " ")" "$(sha256sum <"$1" | cut -d " " -f 1)"'

# Copy the pod's dump to `file` until its size and sha256 match, at most
# KUBE_COPY_ATTEMPTS times. A partial file is deleted, never kept.
kube_copy_dump() {
  local pod_file="$1" file="$2" expected_size="$3" expected_sum="$4"
  local attempt size sum
  for ((attempt = 1; attempt <= KUBE_COPY_ATTEMPTS; attempt++)); do
    if kube_exec prod DB "$LIFECYCLE_TIMEOUT" "" cat -- "$pod_file" >"$file" </dev/null; then
      size="$(stat -c %s -- "$file")"
      sum="$(sha256sum <"$file" | cut -d ' ' -f 1)"
      if [[ "$size" == "$expected_size" && "$sum" == "$expected_sum" ]]; then
        lifecycle_log dump "copied ${size} bytes out of pod ${KUBE_PROD_DB_POD}, sha256 ${sum} as computed there"
        return 0
      fi
      lifecycle_log dump "copy ${attempt} of ${KUBE_COPY_ATTEMPTS} arrived with ${size} bytes and sha256 ${sum} instead of ${expected_size} bytes and ${expected_sum}; retrying"
    else
      lifecycle_log dump "copy ${attempt} of ${KUBE_COPY_ATTEMPTS}: kubectl exec failed; retrying"
    fi
    rm -f -- "$file"
  done
  printf 'error: every one of %s copies of the dump out of pod %s arrived damaged (last: %s bytes, sha256 %s; expected %s bytes, sha256 %s)\n' \
    "$KUBE_COPY_ATTEMPTS" "$KUBE_PROD_DB_POD" "${size:-0}" "${sum:-none}" "$expected_size" "$expected_sum" >&2
  return 1
}

kubectl_dump_prod() {
  local snapshot="$1" file="$2" pod_file summary status=0
  pod_file="$(kube_pod_dump_path)"
  summary="$(kube_exec prod DB "$LIFECYCLE_TIMEOUT" "" env PGAPPNAME="sandbox-lifecycle dump" \
    PGOPTIONS="-c default_transaction_read_only=on" sh -c "$KUBE_POD_DUMP_SCRIPT" sh "$pod_file" \
    "$snapshot" "$PROD_DB_ROLE" "$PROD_DB_NAME" "$LIFECYCLE_DUMP_COMPRESSION_LEVEL" </dev/null)" || status=$?
  if ((status != 0)); then
    return "$status"
  fi
  if [[ ! "$summary" =~ ^([0-9]+)\ ([0-9a-f]{64})$ ]]; then
    printf 'error: the dump in pod %s reported no size and sha256, only %q\n' "$KUBE_PROD_DB_POD" "$summary" >&2
    return 1
  fi
  lifecycle_log dump "pg_dump wrote ${BASH_REMATCH[1]} bytes to ${pod_file} in pod ${KUBE_PROD_DB_POD}, sha256 ${BASH_REMATCH[2]}"

  kube_copy_dump "$pod_file" "$file" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" || status=$?
  kube_remove_pod_dump || :
  return "$status"
}

# -- documents ------------------------------------------------------------------------

# Print "<sha256> <file count>" of the tree at $1, leaving out the entry named $2.
# The digest covers every path with its type, mode and link target, and the
# sha256 of every file, so two trees with the same digest hold the same documents.
# shellcheck disable=SC2016 # the script is expanded by the pod's shell
readonly KUBE_MANIFEST_SCRIPT='set -eu
cd "$1"
{
  find . -mindepth 1 ! -path "./$2" ! -path "./$2/*" -printf "%y %m %p -> %l\n" | LC_ALL=C sort
  find . -mindepth 1 ! -path "./$2" ! -path "./$2/*" -type f -exec sha256sum {} + | LC_ALL=C sort -k 2
} | sha256sum | cut -d " " -f 1 | tr "\n" " "
find . -mindepth 1 ! -path "./$2" ! -path "./$2/*" -type f | wc -l | tr -d " "'

# Unpack a tar stream from stdin into the staging folder $1/$2, replacing it.
# shellcheck disable=SC2016
readonly KUBE_UNPACK_SCRIPT='set -eu
mkdir -p "$1"
rm -rf -- "$1/$2"
mkdir -m 700 -- "$1/$2"
tar -x -p -f - -C "$1/$2"'

# Replace the content of $1 with that of its staging folder $1/$2, give $1 the mode
# and mtime that tar gave the staging folder, then print the counts in rsync
# --stats' words, which the main script reports.
# shellcheck disable=SC2016
readonly KUBE_SWAP_SCRIPT='set -eu
cd "$1"
deleted=$(find . -mindepth 1 ! -path "./$2" ! -path "./$2/*" -type f | wc -l | tr -d " ")
copied=$(find "./$2" -type f | wc -l | tr -d " ")
mode=$(stat -c %a "./$2")
stamp=$(stat -c %y "./$2")
find . -mindepth 1 -maxdepth 1 ! -name "$2" -exec rm -rf -- {} +
find "./$2" -mindepth 1 -maxdepth 1 -exec mv -- {} . \;
rmdir -- "./$2"
chmod "$mode" .
touch -d "$stamp" .
printf "Number of regular files transferred: %s\nNumber of deleted files: %s\n" "$copied" "$deleted"'

kube_manifest() {
  local side="$1" path="$2"
  kube_exec "$side" APP "$LIFECYCLE_TIMEOUT" "" sh -c "$KUBE_MANIFEST_SCRIPT" sh "$path" "$KUBE_STAGING_NAME" </dev/null
}

kube_stream_documents() {
  kube_exec prod APP "$LIFECYCLE_TIMEOUT" "" tar -c -f - -C "$PROD_DOCUMENTS_PATH" . </dev/null |
    kube_exec sandbox APP "$LIFECYCLE_TIMEOUT" -i sh -c "$KUBE_UNPACK_SCRIPT" sh "$SANDBOX_DOCUMENTS_PATH" "$KUBE_STAGING_NAME"
}

# Also an EXIT handler. The main shell resolved the sandbox's pod before the scale
# to 0, so that pod is gone: look up a Running one again.
kube_remove_staging() {
  KUBE_SANDBOX_APP_POD="$(kube_running_pods sandbox "$SANDBOX_APP_WORKLOAD" 2>/dev/null | head -n 1)"
  if [[ -z "$KUBE_SANDBOX_APP_POD" ]]; then
    return 0
  fi
  kube_exec sandbox APP "$LIFECYCLE_QUERY_TIMEOUT_SECONDS" "" \
    rm -rf -- "${SANDBOX_DOCUMENTS_PATH}/${KUBE_STAGING_NAME}" </dev/null || :
}

# Copy prod's documents into a staging folder beside the sandbox's, compare its
# manifest with prod's, and only then replace the sandbox's documents with it.
kubectl_sync_documents() {
  local wanted staged current attempt
  kube_resolve_pod sandbox APP any documents
  wanted="$(kube_manifest prod "$PROD_DOCUMENTS_PATH")"
  current="$(kube_manifest sandbox "$SANDBOX_DOCUMENTS_PATH" 2>/dev/null || :)"
  if [[ "$current" == "$wanted" ]]; then
    printf 'Number of regular files transferred: 0\nNumber of deleted files: 0\n'
    return 0
  fi

  for ((attempt = 1; attempt <= KUBE_COPY_ATTEMPTS; attempt++)); do
    staged=""
    if kube_stream_documents; then
      staged="$(kube_manifest sandbox "${SANDBOX_DOCUMENTS_PATH}/${KUBE_STAGING_NAME}")"
    fi
    if [[ -n "$staged" && "$staged" == "$wanted" ]]; then
      lifecycle_log documents "the copy matches prod's manifest (sha256 and files: ${wanted})"
      kube_exec sandbox APP "$LIFECYCLE_TIMEOUT" "" sh -c "$KUBE_SWAP_SCRIPT" sh \
        "$SANDBOX_DOCUMENTS_PATH" "$KUBE_STAGING_NAME" </dev/null
      return
    fi
    lifecycle_log documents "copy ${attempt} of ${KUBE_COPY_ATTEMPTS} arrived as '${staged:-nothing}' instead of prod's '${wanted}'; retrying"
  done
  kube_remove_staging
  printf 'error: every one of %s copies of the documents arrived different from prod (manifest %s); the sandbox documents were left as they were\n' \
    "$KUBE_COPY_ATTEMPTS" "$wanted" >&2
  return 1
}

# -- replace the local transport --------------------------------------------------------

if [[ "${LIFECYCLE_TRANSPORT:-}" == "kubectl" ]]; then
  transport_validate_environment() { kubectl_validate_environment; }
  transport_database_label() { kubectl_database_label "$@"; }
  transport_describe_targets() { kubectl_describe_targets; }
  transport_required_tools() { kubectl_required_tools; }
  transport_preflight() { kubectl_preflight; }
  transport_pg_dump_version() { kubectl_pg_dump_version; }
  transport_psql_prod() { kubectl_psql prod "$@"; }
  transport_psql_sandbox() { kubectl_psql sandbox "$@"; }
  transport_dump_prod() { kubectl_dump_prod "$@"; }
  transport_sync_documents() { kubectl_sync_documents; }
  transport_begin() { argocd_begin; }
  transport_recover() { argocd_recover_command; }
  transport_quiesce_sandbox() { argocd_quiesce_sandbox; }
  transport_check_quiesced() { argocd_check_quiesced; }
  transport_resume_sandbox() {
    argocd_resume_sandbox
    if ((LIFECYCLE_DB_ONLY == 0)); then
      on_exit_add kube_remove_staging
    fi
  }
fi
