# shellcheck shell=bash
# Helpers shared by the test scripts: a private apt state that reads the
# machine's Debian mirror from its own apt configuration and never touches the
# system's package lists or caches.

# Print the first Debian archive URI configured on this machine.
debian_mirror() {
    local uri=""
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        # deb822: take the URIs of an entry whose Suites are not -security.
        uri=$(awk '
            BEGIN { RS=""; FS="\n" }
            {
                uris=""; suites=""; types=""
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/)   { sub(/^URIs:[ \t]*/, "", $i); uris=$i }
                    if ($i ~ /^Suites:/) { sub(/^Suites:[ \t]*/, "", $i); suites=$i }
                    if ($i ~ /^Types:/)  { types=$i }
                }
                if (types ~ /deb([ \t]|$)/ && suites !~ /security/ && uris != "") {
                    split(uris, u, /[ \t]+/); print u[1]; exit
                }
            }' "$f")
        [ -n "$uri" ] && break
    done
    if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {
                for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit }
            }' /etc/apt/sources.list)
    fi
    if [ -z "$uri" ]; then
        echo "error: no Debian archive URI found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list" >&2
        echo "hint: configure an apt source for the Debian archive" >&2
        return 1
    fi
    printf '%s\n' "${uri%/}"
}

# private_apt STATE_DIR SUITE [OPTION...]: prepare a private apt state for
# SUITE (main) in STATE_DIR and run `apt-get update` there once; each OPTION
# (e.g. check-valid-until=no) goes into the source's [...] options. Afterwards
# use `papt STATE_DIR <apt-get args>`.
private_apt() {
    local state suite=$2 mirror keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    local options="signed-by=$keyring"
    local o
    for o in "${@:3}"; do options="$options $o"; done
    mkdir -p "$1"
    state=$(cd "$1" && pwd) # apt resolves relative Dir:: paths against its own dirs
    if [ ! -r "$keyring" ]; then
        echo "error: $keyring is missing" >&2
        echo "hint: apt-get install debian-archive-keyring" >&2
        return 1
    fi
    mirror=$(debian_mirror) || return 1
    mkdir -p "$state/lists/partial" "$state/archives/partial" "$state/etc/preferences.d"
    printf 'deb [%s] %s %s main\n' "$options" "$mirror" "$suite" >"$state/sources.list.new"
    if ! cmp -s "$state/sources.list.new" "$state/sources.list" || [ ! -e "$state/updated" ]; then
        mv "$state/sources.list.new" "$state/sources.list"
        rm -f "$state/updated"
        papt "$state" -q update >&2 || return 1
        touch "$state/updated"
    else
        rm -f "$state/sources.list.new"
    fi
}

# papt STATE_DIR ARGS...: apt-get with the private state of private_apt;
# PAPT_TOOL=apt-cache runs apt-cache with it instead.
papt() {
    local state
    state=$(cd "$1" && pwd)
    shift
    "${PAPT_TOOL:-apt-get}" \
        -o Dir::Etc::SourceList="$state/sources.list" \
        -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::Etc::Preferences=/dev/null \
        -o Dir::Etc::PreferencesParts="$state/etc/preferences.d" \
        -o Dir::State::Lists="$state/lists" \
        -o Dir::Cache="$state" \
        -o Dir::Cache::Archives="$state/archives" \
        -o Dir::Cache::pkgcache="" \
        -o Dir::Cache::srcpkgcache="" \
        -o APT::Sandbox::User=root \
        "$@"
}

# papt_download STATE_DIR DEST_DIR PKG...: `apt-get download` into DEST_DIR;
# when the cached package lists are stale, refresh them once and retry.
papt_download() {
    local state dest=$2
    state=$(cd "$1" && pwd)
    shift 2
    if ! (cd "$dest" && papt "$state" -q download "$@"); then
        echo "retrying after refreshing the package lists" >&2
        papt "$state" -q update >&2
        (cd "$dest" && papt "$state" -q download "$@")
    fi
}

# papt_lib_depends STATE_DIR PKG...: the libraries (packages named lib*)
# PKG... depend on (Depends and Pre-Depends), one per line, sorted.
papt_lib_depends() {
    local state=$1
    shift
    PAPT_TOOL=apt-cache papt "$state" depends --important "$@" 2>/dev/null |
        awk '$1 ~ /^[|]?(Pre)?Depends:$/ && $2 ~ /^lib/ { print $2 }' | sort -u
}
