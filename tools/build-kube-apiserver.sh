#!/usr/bin/env bash
# Build kube-apiserver v1.20.2 from Debian bookworm's `kubernetes` source package, once per machine.
#
# Why: the integration tests need a real Kubernetes API server, no reachable registry ships one as a
# binary, and Debian's source package is fully vendored, so it builds offline with Debian's Go.
# The result is cached; a second run is a no-op.
#
#   bash tools/build-kube-apiserver.sh          # unattended, as root on Debian 12
#   WREN_CACHE=/some/dir bash tools/...         # cache elsewhere (default ~/.cache/wren)
#
# Nothing in the machine's apt configuration is changed: `apt-get source` gets a private sources
# list (a deb-src line built from the mirror the machine already uses) and private state dirs.
set -euo pipefail

VERSION=v1.20.2
CACHE=${WREN_CACHE:-$HOME/.cache/wren}
DEST_DIR=$CACHE/kube-apiserver-$VERSION
DEST=$DEST_DIR/kube-apiserver

say() { printf '[build-kube-apiserver] %s\n' "$*" >&2; }

if [[ -x $DEST ]]; then
    say "already built: $DEST"
    exit 0
fi

# -- build dependencies from Debian ------------------------------------------------------------
NEED=(golang-go rsync dpkg-dev golang-github-modern-go-reflect2-dev)
missing=()
for p in "${NEED[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2
[[ -f $REFLECT2/reflect2.go ]] || { say "missing $REFLECT2 (golang-github-modern-go-reflect2-dev)"; exit 1; }

# -- the mirror the machine already uses, as a deb-src line ------------------------------------
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    # deb822: the first URIs: of a stanza whose Suites: include bookworm (not -security/-updates).
    mirror=$(awk '
        /^[[:space:]]*$/ { if (uri != "" && suite) { print uri; exit } uri=""; suite=0; next }
        /^URIs:/ { uri=$2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") suite=1 }
        END { if (uri != "" && suite) print uri }' "$f" | head -n1)
    [[ -n $mirror ]] && break
done
if [[ -z $mirror ]]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        mirror=$(awk '$1 == "deb" && $0 ~ / bookworm / {
            for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$f" | head -n1)
        [[ -n $mirror ]] && break
    done
fi
[[ -n $mirror ]] || { say "no bookworm mirror found in /etc/apt sources; cannot fetch the source"; exit 1; }
say "using mirror $mirror for the source package"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wren-kube-build.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial" "$WORK/src"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb-src [signed-by=$keyring] $mirror bookworm main" >"$WORK/apt/sources.list"
APT_OPTS=(
    -o "Dir::Etc::SourceList=$WORK/apt/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$WORK/apt/lists"
    -o "Dir::Cache=$WORK/apt/cache"
    -o "APT::Sandbox::User=root"
)
say "fetching the source index (private lists in $WORK/apt)"
apt-get "${APT_OPTS[@]}" update -qq
say "apt-get source kubernetes (about 30 MB)"
(cd "$WORK/src" && apt-get "${APT_OPTS[@]}" source -qq kubernetes >/dev/null)
SRC=$(find "$WORK/src" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
[[ -n $SRC ]] || { say "source not unpacked under $WORK/src"; exit 1; }
say "unpacked $SRC"

# -- the one fix: vendored reflect2 v1.0.1 crashes on Go >= 1.18; use Debian's 1.0.2 ------------
VENDORED=$SRC/vendor/github.com/modern-go/reflect2
[[ -d $VENDORED ]] || { say "expected vendored reflect2 at $VENDORED"; exit 1; }
rm -rf "$VENDORED"
mkdir -p "$VENDORED"
cp -a "$REFLECT2"/. "$VENDORED"/
find "$VENDORED" -name '*_test.go' -delete

# -- upstream's build, GOPATH mode with the vendor tree ------------------------------------------
say "building cmd/kube-apiserver with $(go version) (several minutes, ~1.3 GB)"
export KUBE_GIT_VERSION=$VERSION
export KUBE_GIT_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56
export KUBE_GIT_TREE_STATE=clean
export KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20
export GO111MODULE=off GOFLAGS=-mod=vendor GOCACHE=$WORK/gocache
export KUBE_VERBOSE=${KUBE_VERBOSE:-1}
# Both cores of a shared machine would make everyone else's tests crawl; one is plenty.
export GOMAXPROCS=${GOMAXPROCS:-1}
(cd "$SRC" && make WHAT=cmd/kube-apiserver GOFLAGS=-mod=vendor GOLDFLAGS="-s -w")

BUILT=$(find "$SRC/_output" -type f -name kube-apiserver -perm -u+x | head -n1)
[[ -n $BUILT ]] || { say "build finished but no kube-apiserver binary in $SRC/_output"; exit 1; }
"$BUILT" --version >&2
mkdir -p "$DEST_DIR"
install -m 0755 "$BUILT" "$DEST.tmp"
mv "$DEST.tmp" "$DEST"
say "installed $DEST"
