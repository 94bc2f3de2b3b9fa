# Guards: SQL that the restore sends after the row count check and before COMMIT,
# so the new sandbox is never visible without them.
#
# LIFECYCLE_GUARDS_SQL names a local file written by `checkpoint.guards.refresh_sql`.
# The script reads the file and sends its content through the restore session, so it
# works whatever runs psql. The file prints "lifecycle-guard-applying<TAB><name>"
# before each guard, raises "lifecycle-guards-not-in-effect: <names>" or
# "lifecycle-guard-failed: ..." when a guard is not in effect, and prints
# "lifecycle-guards-in-effect" at the end. Sourced by sandbox-lifecycle.sh.
#
# LIFECYCLE_GUARDS_CHECK_SQL names a file written by `checkpoint.guards.check_only_sql`:
# the same check without applying anything, which checkpoint-save and rewind run
# (lib/checkpoint.sh).

readonly LIFECYCLE_EXIT_GUARDS=18

lifecycle_validate_guards() {
  if [[ -n "${LIFECYCLE_GUARDS_SQL:-}" && ! -r "$LIFECYCLE_GUARDS_SQL" ]]; then
    lifecycle_usage_error "LIFECYCLE_GUARDS_SQL names a file that is not readable (${LIFECYCLE_GUARDS_SQL}): write the guards SQL there or unset it"
  fi
  if [[ -n "${LIFECYCLE_GUARDS_CHECK_SQL:-}" && ! -r "$LIFECYCLE_GUARDS_CHECK_SQL" ]]; then
    lifecycle_usage_error "LIFECYCLE_GUARDS_CHECK_SQL names a file that is not readable (${LIFECYCLE_GUARDS_CHECK_SQL}): write the guards check SQL there or unset it"
  fi
}

lifecycle_guard_names() {
  sed -n 's/^-- guard: //p' -- "$LIFECYCLE_GUARDS_SQL"
}

# Print the guards SQL to send before COMMIT, or nothing when no file is set.
lifecycle_guards_sql() {
  if [[ -n "${LIFECYCLE_GUARDS_SQL:-}" ]]; then
    cat -- "$LIFECYCLE_GUARDS_SQL"
  fi
}

lifecycle_log_guards_planned() {
  local names
  if [[ -z "${LIFECYCLE_GUARDS_SQL:-}" ]]; then
    lifecycle_log restore "no guards: LIFECYCLE_GUARDS_SQL is not set, so the sandbox keeps prod's mail, webhooks and jobs settings"
    return 0
  fi
  names="$(lifecycle_guard_names | paste -s -d ',' - | sed 's/,/, /g')"
  lifecycle_log restore "applying $(lifecycle_guard_names | grep -c .) guards before COMMIT: ${names}"
}

lifecycle_log_guards_committed() {
  if [[ -n "${LIFECYCLE_GUARDS_SQL:-}" ]]; then
    lifecycle_log restore "committed with $(lifecycle_guard_names | grep -c .) guards in effect, checked before COMMIT"
  fi
}

# Return 0 when the guards ran and reported success in the session's output.
lifecycle_guards_confirmed() {
  local output="$1"
  [[ -z "${LIFECYCLE_GUARDS_SQL:-}" ]] || grep -qx 'lifecycle-guards-in-effect' -- "$output"
}

# If the restore failed because of a guard, print a message that names it and return 0.
lifecycle_guard_failure() {
  local output="$1" errors="$2" applying
  if [[ -z "${LIFECYCLE_GUARDS_SQL:-}" ]]; then
    return 1
  fi
  if grep -q 'lifecycle-guards-not-in-effect: ' -- "$errors"; then
    printf 'guards not in effect after applying them: %s' \
      "$(grep -m 1 -o 'lifecycle-guards-not-in-effect: .*' -- "$errors" | sed 's/^[^:]*: //')"
    return 0
  fi
  if grep -q 'lifecycle-guard-failed: ' -- "$errors"; then
    grep -m 1 -o 'lifecycle-guard-failed: .*' -- "$errors" | sed 's/^[^:]*: //'
    return 0
  fi
  grep -qx 'lifecycle-counts-equal' -- "$output" || return 1
  applying="$(sed -n 's/^lifecycle-guard-applying\t//p' -- "$output" | tail -n 1)"
  if [[ -n "$applying" ]] && ! grep -qx 'lifecycle-guards-in-effect' -- "$output"; then
    printf 'guard %s failed: %s' "$applying" "$(lifecycle_first_error_line "$errors")"
    return 0
  fi
  return 1
}
