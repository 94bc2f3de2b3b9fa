# Documents comparison that runs in the background during the database phases. Phase
# documents then copies and deletes only the entries that differ, instead of walking both
# trees after COMMIT.
#
# The comparison only reads the two folders and writes only to the work folder. The copy
# still starts after the restore has committed. Only the local transport (also run on a
# bastion) uses it; the kubectl transport keeps its own full sync. Sourced by
# sandbox-lifecycle.sh.
#
# An entry that changes on either side after the comparison is not seen by this refresh,
# so the sandbox ends equal to prod as of the comparison, which starts right after
# preflight. A failed comparison falls back to the full rsync.

DOCUMENTS_COMPARE_PID=""

# Print one record per entry of `root`, itself included, NUL-terminated and sorted bytewise:
# "<relative path>//<type> <mode> <size> <mtime> <symlink target>[ <uid> <gid>]".
# A file name cannot contain "/", so the first "//" ends the path. The fields are what
# rsync -a compares and preserves here, so every entry that rsync -a would change has a
# record that differs between the two folders. Owner and group count only for root,
# because rsync -a run by another user does not copy the owner, and copies the group only
# when the user belongs to it. The sync marker is left out.
# NOTE: so for a user other than root, a group change in prod is not synced.
documents_list_entries() {
  local root="$1" marker_pattern="^${LIFECYCLE_DOCUMENTS_MARKER//./\\.}//"
  local format='%P//%y %m %s %T@ %l'
  if ((EUID == 0)); then
    format+=' %U %G'
  fi
  lifecycle_bounded "$LIFECYCLE_TIMEOUT" find "${root%/}/" -printf "${format}\\0" |
    grep -z -v -e "$marker_pattern" |
    LC_ALL=C lifecycle_bounded "$LIFECYCLE_TIMEOUT" sort -z
}

# Print the paths of NUL-terminated records from stdin, sorted bytewise.
documents_record_paths() {
  sed -z 's|//.*||' | LC_ALL=C sort -z -u
}

# Print the paths of `deleted` (sorted, NUL-terminated) whose parent folder is not itself
# deleted, because rsync --force removes a deleted folder with everything in it.
documents_topmost_paths() {
  local deleted="$1" path parent
  local -A removed=()
  while IFS= read -r -d '' path; do
    parent="$path"
    while [[ "$parent" == */* ]]; do
      parent="${parent%/*}"
      if [[ -n "${removed[$parent]+set}" ]]; then
        continue 2
      fi
    done
    removed["$path"]=1
    printf '%s\0' "$path"
  done <"$deleted"
}

# Write to `diff` the NUL-terminated list of paths that rsync must copy from prod or delete
# in the sandbox, each prefixed with "./" so that rsync never reads a name as a comment.
documents_compare() {
  local work="$1" diff="$2"
  local prod_list="${work}/documents-prod.list" sandbox_list="${work}/documents-sandbox.list"
  local changed="${work}/documents-changed.paths" absent="${work}/documents-absent.paths"
  local deleted="${work}/documents-deleted.paths"

  documents_list_entries "$PROD_DOCUMENTS_DIR" >"$prod_list" || return 1
  documents_list_entries "$SANDBOX_DOCUMENTS_DIR" >"$sandbox_list" || return 1

  # A record only in prod is a new or changed entry. A path with a record only in the
  # sandbox and none in prod is an entry to delete.
  LC_ALL=C comm -23 -z "$prod_list" "$sandbox_list" | documents_record_paths >"$changed" || return 1
  LC_ALL=C comm -13 -z "$prod_list" "$sandbox_list" | documents_record_paths >"$absent" || return 1
  LC_ALL=C comm -23 -z "$absent" "$changed" >"$deleted" || return 1

  {
    sed -z 's|^|./|' "$changed"
    documents_topmost_paths "$deleted" | sed -z 's|^|./|'
  } >"$diff"
}

# Start the comparison in the background when it can help: local transport, documents
# included, and a sandbox folder that already has entries. It runs at a lower CPU priority
# than the dump, and without the script's ERR trap, because its failure is not fatal.
documents_compare_start() {
  if [[ "$LIFECYCLE_TRANSPORT" != "local" ]] || ((LIFECYCLE_DB_ONLY == 1)); then
    return 0
  fi
  if [[ ! -d "$SANDBOX_DOCUMENTS_DIR" || -z "$(ls -A -- "$SANDBOX_DOCUMENTS_DIR")" ]]; then
    return 0
  fi

  (
    trap - ERR
    set +e
    # Close this job's copy of the lock's descriptor, so that the lock of a killed run
    # ends with the run even while this job still runs.
    if [[ -n "${LIFECYCLE_LOCK_FD:-}" ]]; then
      exec {LIFECYCLE_LOCK_FD}>&-
    fi
    renice -n 10 -p "$BASHPID" >/dev/null 2>&1
    documents_compare "$LIFECYCLE_WORK" "${LIFECYCLE_WORK}/documents.diff"
  ) >/dev/null 2>"${LIFECYCLE_WORK}/documents-compare.err" &
  DOCUMENTS_COMPARE_PID=$!
  lifecycle_track_child "$DOCUMENTS_COMPARE_PID"
}

# Wait for the comparison and return 0 when its list of differing paths is ready.
documents_compare_finished() {
  local status=0
  if [[ -z "$DOCUMENTS_COMPARE_PID" ]]; then
    lifecycle_log documents "no comparison ran before COMMIT (empty sandbox folder or kubectl transport): rsync compares every entry"
    return 1
  fi

  wait "$DOCUMENTS_COMPARE_PID" || status=$?
  lifecycle_untrack_child "$DOCUMENTS_COMPARE_PID"
  DOCUMENTS_COMPARE_PID=""
  if ((status != 0)); then
    lifecycle_log documents "the comparison run before COMMIT failed ($(lifecycle_first_error_line "${LIFECYCLE_WORK}/documents-compare.err")): rsync compares every entry instead"
    return 1
  fi
  lifecycle_log documents "compared before COMMIT: $(tr -cd '\0' <"${LIFECYCLE_WORK}/documents.diff" | wc -c) paths differ from prod"
}

# Copy the listed entries from prod and delete those that prod no longer has, with the
# same marker as transport_sync_documents.
documents_sync_listed() {
  local marker="${SANDBOX_DOCUMENTS_DIR%/}/${LIFECYCLE_DOCUMENTS_MARKER}"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$marker"
  lifecycle_bounded "$LIFECYCLE_TIMEOUT" rsync -a --stats --from0 --files-from="${LIFECYCLE_WORK}/documents.diff" \
    --delete-missing-args --force -- "${PROD_DOCUMENTS_DIR%/}/" "${SANDBOX_DOCUMENTS_DIR%/}/"
  rm -f -- "$marker"
  touch -r "${PROD_DOCUMENTS_DIR%/}" -- "${SANDBOX_DOCUMENTS_DIR%/}"
}
