#!/usr/bin/env bash
# Build the lci sandbox image without any container registry.
#
#   sandbox_images/build_offline.sh [--force] [--no-cache] [IMAGE]
#
# A Debian bookworm rootfs is debootstrapped from the Debian mirror this
# machine's apt already uses, imported with `docker import`, and finished by
# finish.Dockerfile (whose FROM is that local image, so `docker build` stays
# offline). Root is required (debootstrap, chroot).
#
# The agent (LCI_AGENT_SOURCE) is built into the image at /opt/lci-agent, and
# its digest is the lci.agent_digest label. Nothing is built when IMAGE already
# carries the lci.build_hash label of this script and finish.Dockerfile, the
# requested lci.agent_protocol and the agent's digest.
#   --force     rebuild the image anyway (reusing the cached rootfs)
#   --no-cache  also debootstrap again (picks up Debian updates; the
#               downloaded .debs stay cached)
# The rootfs tarball is cached under LCI_IMAGE_CACHE, keyed by the package
# lists, suite, architecture and mirrors.
#
# Environment:
#   LCI_DOCKER_IMAGE      image name when no IMAGE argument is given (lci-sandbox:latest)
#   LCI_AGENT_PROTOCOL    value of the lci.agent_protocol label (1)
#   LCI_AGENT_SOURCE      the agent's source directory (engine/agent beside this folder)
#   LCI_IMAGE_CACHE       cache directory for the rootfs tarball and .debs (/var/cache/lci-image)
#   LCI_DEBIAN_MIRROR     Debian mirror (default: the one in /etc/apt/sources*)
#   LCI_DEBIAN_SECURITY_MIRROR  Debian security mirror (default: likewise)
#   LCI_BUILD_TMPDIR      where the temporary rootfs is unpacked (/var/tmp)
set -euo pipefail

readonly SUITE=bookworm
# Bump to invalidate cached rootfs tarballs when the way they are made changes.
readonly ROOTFS_RECIPE=2
# Installed by debootstrap --include (dependencies, not recommends, are pulled
# in). libopenblas0-pthread replaces the reference BLAS/LAPACK that numpy and
# scipy would otherwise get (a 1500x1500 matrix product: 0.14 s instead of
# several seconds).
readonly INCLUDE_PACKAGES=(
    python3 python3-numpy python3-pandas python3-sympy python3-ipython python3-cloudpickle
    libopenblas0-pthread tini ca-certificates fonts-dejavu-core fonts-wqy-microhei
)
# Installed afterwards with apt inside the rootfs. Debian's python3-scipy
# (which python3-matplotlib pulls in through python3-fonttools) depends on the
# pythran compiler, and so on g++, boost and python3-dev: a few hundred MB that
# scipy never uses at run time. debootstrap cannot leave a dependency out, so a
# held placeholder python3-pythran package is installed before apt runs.
readonly CHROOT_PACKAGES=(python3-matplotlib python3-scipy)
# matplotlib's default font families. matplotlib (3.6) falls back glyph by
# glyph only across the entries of font.family, and a generic family such as
# sans-serif stands for one font there, so the CJK font is listed in
# font.family itself: Latin from DejaVu Sans, Chinese, kana and Hangul from
# WenQuanYi Micro Hei (5 MB; fonts-noto-cjk is 90 MB). That font has Latin
# too, so text still renders in full when code points font.sans-serif at a
# font that is not installed (the common ['SimHei'] recipe).
readonly MPL_FONT_FAMILY="sans-serif, WenQuanYi Micro Hei"
readonly MPL_SANS_SERIF="DejaVu Sans, WenQuanYi Micro Hei, Bitstream Vera Sans, Arial, Helvetica"

usage() {
    sed -n '2,/^set -euo/s/^# \{0,1\}//p' "$0"
}

FORCE=0
NO_CACHE=0
IMAGE=""
while (($#)); do
    case "$1" in
        --force) FORCE=1 ;;
        --no-cache) NO_CACHE=1; FORCE=1 ;;
        -h | --help) usage; exit 0 ;;
        -*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
        *)
            if [[ -n "$IMAGE" ]]; then
                echo "only one image name may be given" >&2
                exit 2
            fi
            IMAGE="$1"
            ;;
    esac
    shift
done
IMAGE="${IMAGE:-${LCI_DOCKER_IMAGE:-lci-sandbox:latest}}"
AGENT_PROTOCOL="${LCI_AGENT_PROTOCOL:-1}"
AGENT_SOURCE="${LCI_AGENT_SOURCE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/engine/agent}"
CACHE_DIR="${LCI_IMAGE_CACHE:-/var/cache/lci-image}"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly DOCKERFILE="$SCRIPT_DIR/finish.Dockerfile"

START=$SECONDS
STEP_START=$SECONDS
STEP_NAME=""
step() {
    local now=$SECONDS
    if [[ -n "$STEP_NAME" ]]; then
        printf '    (%s: %ds)\n' "$STEP_NAME" $((now - STEP_START))
    fi
    STEP_NAME="$1"
    STEP_START=$now
    printf '==> [%4ds] %s\n' $((now - START)) "$1"
}
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# run_logged LOG CMD...: run CMD with its output appended to LOG; on failure
# show the end of LOG and stop.
run_logged() {
    local log="$1"
    shift
    if ! "$@" >>"$log" 2>&1; then
        echo "---- last lines of $log ----" >&2
        tail -n 40 "$log" >&2
        die "command failed: $*"
    fi
}

# apt_uri SUITE: the first URI of an enabled `deb` source for SUITE in this
# machine's apt configuration (one-line and deb822 formats).
apt_uri() {
    local want="$1" f
    local -a lists=() deb822=()
    [[ -f /etc/apt/sources.list ]] && lists+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list; do [[ -f "$f" ]] && lists+=("$f"); done
    for f in /etc/apt/sources.list.d/*.sources; do [[ -f "$f" ]] && deb822+=("$f"); done
    {
        if ((${#deb822[@]})); then
            awk -v want="$want" '
                function flush(   n, i, s, u) {
                    if (types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) != "no") {
                        n = split(suites, s, /[ \t]+/)
                        for (i = 1; i <= n; i++) if (s[i] == want) {
                            split(uris, u, /[ \t]+/)
                            for (i = 1; i in u; i++) if (u[i] != "") { print u[i]; break }
                            break
                        }
                    }
                    types = suites = uris = enabled = ""
                }
                /^[ \t]*#/ { next }
                /^[ \t]*$/ { flush(); next }
                { key = tolower($1); val = $0; sub(/^[^:]*:[ \t]*/, "", val) }
                key == "types:" { types = val }
                key == "suites:" { suites = val }
                key == "uris:" { uris = val }
                key == "enabled:" { enabled = val }
                END { flush() }
            ' "${deb822[@]}"
        fi
        if ((${#lists[@]})); then
            awk -v want="$want" '
                $1 == "deb" {
                    i = 2
                    if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == want) print $i
                }
            ' "${lists[@]}"
        fi
    } | sed 's:/*$::' | grep -E '^(https?|file)://' | head -n 1 || true
}

[[ $EUID -eq 0 ]] || die "run as root (debootstrap and chroot need it)"
for cmd in docker debootstrap dpkg-deb chroot tar sha256sum; do
    command -v "$cmd" >/dev/null || die "missing command: $cmd (see .ci/setup_docker.sh)"
done
[[ -f "$DOCKERFILE" ]] || die "missing $DOCKERFILE"
docker info >/dev/null 2>&1 || die "no Docker daemon answers (run .ci/setup_docker.sh)"

BUILD_HASH="$(cat "${BASH_SOURCE[0]}" "$DOCKERFILE" | sha256sum | cut -c1-32)"
readonly BUILD_HASH
[[ -f "$AGENT_SOURCE/kernel.py" ]] || die "no agent in $AGENT_SOURCE (set LCI_AGENT_SOURCE)"
# The same digest as engine.core.agent_files.agent_digest: sha256 over name, NUL,
# content of each *.py in name order; the first 16 hex digits.
AGENT_DIGEST="$(python3 -c '
import hashlib, pathlib, sys
digest = hashlib.sha256()
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.py")):
    digest.update(path.name.encode() + b"\0" + path.read_bytes())
print(digest.hexdigest()[:16])' "$AGENT_SOURCE")"
readonly AGENT_DIGEST

step "checking $IMAGE"
current="$(docker image inspect -f '{{index .Config.Labels "lci.build_hash"}} {{index .Config.Labels "lci.agent_protocol"}} {{index .Config.Labels "lci.agent_digest"}}' "$IMAGE" 2>/dev/null || true)"
if ((!FORCE)) && [[ "$current" == "$BUILD_HASH $AGENT_PROTOCOL $AGENT_DIGEST" ]]; then
    echo "    $IMAGE is up to date (build hash $BUILD_HASH, agent protocol $AGENT_PROTOCOL, agent $AGENT_DIGEST); --force rebuilds"
    exit 0
fi
OLD_IMAGE_ID="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"

MIRROR="${LCI_DEBIAN_MIRROR:-$(apt_uri "$SUITE")}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${LCI_DEBIAN_SECURITY_MIRROR:-$(apt_uri "$SUITE-security")}"
SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
ARCH="$(dpkg --print-architecture)"
echo "    mirror $MIRROR, security $SECURITY_MIRROR, $SUITE/$ARCH"

ROOTFS_KEY="$(printf '%s\n' "recipe=$ROOTFS_RECIPE" "suite=$SUITE" "arch=$ARCH" \
    "mirror=$MIRROR" "security=$SECURITY_MIRROR" \
    "include=${INCLUDE_PACKAGES[*]}" "chroot=${CHROOT_PACKAGES[*]}" | sha256sum | cut -c1-16)"
ROOTFS_TARBALL="$CACHE_DIR/rootfs-$SUITE-$ARCH-$ROOTFS_KEY.tar"
if command -v zstd >/dev/null; then
    ROOTFS_TARBALL+=".zst"
    COMPRESS=(zstd -q -T0 -3)
    DECOMPRESS=(zstd -q -d -c)
else
    ROOTFS_TARBALL+=".gz"
    COMPRESS=(gzip -1)
    DECOMPRESS=(gzip -d -c)
fi
BASE_IMAGE="lci-sandbox-rootfs:$ROOTFS_KEY-$$"

WORK="$(mktemp -d "${LCI_BUILD_TMPDIR:-/var/tmp}/lci-image.XXXXXX")"
ROOTFS="$WORK/rootfs"
LOG="$WORK/build.log"
BASE_IMPORTED=0
cleanup() {
    local status=$? mnt
    # Anything debootstrap or a chroot step left mounted goes before the tree.
    if [[ -d "$WORK" ]]; then
        while read -r mnt; do
            umount -l "$mnt" 2>/dev/null || true
        done < <(awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r)
        rm -rf --one-file-system "$WORK"
    fi
    if ((BASE_IMPORTED)); then
        docker image rm "$BASE_IMAGE" >/dev/null 2>&1 || true
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

in_rootfs() {
    chroot "$ROOTFS" /usr/bin/env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive HOME=/root "$@"
}

if [[ -f "$ROOTFS_TARBALL" ]] && ((!NO_CACHE)); then
    step "unpacking cached rootfs $(basename "$ROOTFS_TARBALL")"
    mkdir "$ROOTFS"
    "${DECOMPRESS[@]}" "$ROOTFS_TARBALL" | tar -C "$ROOTFS" --numeric-owner -xpf -
else
    mkdir -p "$CACHE_DIR/debs"
    step "debootstrap $SUITE (minbase) with ${INCLUDE_PACKAGES[*]}"
    include="$(IFS=,; echo "${INCLUDE_PACKAGES[*]}")"
    debootstrap --variant=minbase --arch="$ARCH" --include="$include" \
        --cache-dir="$CACHE_DIR/debs" "$SUITE" "$ROOTFS" "$MIRROR" 2>&1 \
        | tee -a "$LOG" \
        | awk '/^I: (Retrieving|Validating|Extracting|Unpacking|Configuring) / && !/(packages|system)\.\.\.$/ { next }
               { print "    " $0; fflush() }'

    step "apt in the rootfs: security updates and ${CHROOT_PACKAGES[*]}"
    cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
    stub="$WORK/pythran-stub"
    mkdir -p "$stub/DEBIAN"
    cat >"$stub/DEBIAN/control" <<'EOF'
Package: python3-pythran
Version: 1:0~lci1
Architecture: all
Maintainer: lci <lci@localhost>
Priority: optional
Section: python
Description: placeholder for the pythran compiler
 python3-scipy depends on python3-pythran, which scipy does not import at
 run time; this empty package satisfies that dependency in the lci sandbox
 image without installing a C++ toolchain.
EOF
    run_logged "$LOG" dpkg-deb --root-owner-group --build "$stub" "$ROOTFS/tmp/python3-pythran-stub.deb"
    run_logged "$LOG" in_rootfs dpkg -i /tmp/python3-pythran-stub.deb
    rm -f "$ROOTFS/tmp/python3-pythran-stub.deb"
    run_logged "$LOG" in_rootfs apt-mark hold python3-pythran
    apt_opts=(-q -y -o Acquire::Check-Valid-Until=false -o Acquire::Check-Date=false
        -o Dpkg::Use-Pty=0 -o APT::Install-Recommends=false -o Dpkg::Options::=--force-confold)
    run_logged "$LOG" in_rootfs apt-get "${apt_opts[@]}" update
    run_logged "$LOG" in_rootfs apt-get "${apt_opts[@]}" upgrade
    run_logged "$LOG" in_rootfs apt-get "${apt_opts[@]}" install "${CHROOT_PACKAGES[@]}"
    run_logged "$LOG" in_rootfs apt-get "${apt_opts[@]}" clean
    rm -rf "$ROOTFS"/var/lib/apt/lists/*
    echo "    $(in_rootfs dpkg-query -W -f '.\n' | wc -l) packages installed"

    step "caching rootfs as $ROOTFS_TARBALL"
    tar -C "$ROOTFS" --numeric-owner -cf - . | "${COMPRESS[@]}" >"$ROOTFS_TARBALL.tmp.$$"
    mv -f "$ROOTFS_TARBALL.tmp.$$" "$ROOTFS_TARBALL"
    # Older rootfs tarballs are superseded by this one.
    find "$CACHE_DIR" -maxdepth 1 -name "rootfs-$SUITE-$ARCH-*.tar.*" \
        ! -name "$(basename "$ROOTFS_TARBALL")" -delete
    echo "    $(du -h "$ROOTFS_TARBALL" | cut -f1)"
fi

step "configuring the rootfs (user, matplotlib defaults, stripping)"
# Sandbox user and its workspace.
run_logged "$LOG" in_rootfs groupadd --gid 1000 sandbox
run_logged "$LOG" in_rootfs useradd --uid 1000 --gid 1000 --no-log-init \
    --home-dir /home/sandbox --create-home --shell /bin/bash sandbox
install -d -o 1000 -g 1000 -m 0755 "$ROOTFS/workspace"
# Docker provides these at run time; never ship the build host's.
: >"$ROOTFS/etc/resolv.conf"
: >"$ROOTFS/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOTFS/etc/hosts"
# matplotlib: headless backend, and a sans-serif list whose fallback covers CJK.
[[ -f "$ROOTFS/etc/matplotlibrc" ]] || die "matplotlib's /etc/matplotlibrc is missing"
sed -i -E 's/^[[:space:]]*(backend|font\.family|font\.sans-serif)[[:space:]]*:/#&/' "$ROOTFS/etc/matplotlibrc"
cat >>"$ROOTFS/etc/matplotlibrc" <<EOF

## lci sandbox defaults
backend: Agg
font.family: $MPL_FONT_FAMILY
font.sans-serif: $MPL_SANS_SERIF
EOF
# Strip what a sandbox never reads: documentation (copyright files stay),
# translations, package caches, logs, and the packages' own test suites.
find "$ROOTFS/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$ROOTFS"/usr/share/{man,info,locale,lintian,linda}/* \
    "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/lib/apt/lists/* \
    "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/lib/dpkg/*-old \
    "$ROOTFS"/var/cache/ldconfig/aux-cache "$ROOTFS"/root/.cache \
    "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
# Unicode Character Database text files (unicode-data, a python3-fonttools
# dependency): nothing in the image reads them.
rm -rf "$ROOTFS"/usr/share/unicode/*
find "$ROOTFS/var/log" -type f -delete
find "$ROOTFS/usr/lib/python3/dist-packages" -depth -type d -name tests -exec rm -rf {} +
# Keep only the C.UTF-8 locale (libc-bin ships it; nothing else is installed).
find "$ROOTFS/usr/lib/locale" -mindepth 1 -maxdepth 1 ! -name C.utf8 -exec rm -rf {} +
echo "    rootfs $(du -sh --one-file-system "$ROOTFS" | cut -f1)"

step "docker import as $BASE_IMAGE"
tar -C "$ROOTFS" --numeric-owner -cf - . | docker import - "$BASE_IMAGE" >/dev/null
BASE_IMPORTED=1

step "docker build $IMAGE from finish.Dockerfile"
ctx="$WORK/context"
mkdir "$ctx"
cp "$DOCKERFILE" "$ctx/Dockerfile"
mkdir "$ctx/lci_agent"
cp "$AGENT_SOURCE"/*.py "$ctx/lci_agent/"
chmod 0755 "$ctx/lci_agent"
chmod 0644 "$ctx/lci_agent"/*.py
run_logged "$LOG" docker build --network none \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-arg "LCI_AGENT_PROTOCOL=$AGENT_PROTOCOL" \
    --build-arg "LCI_AGENT_DIGEST=$AGENT_DIGEST" \
    --build-arg "LCI_BUILD_HASH=$BUILD_HASH" \
    -t "$IMAGE" "$ctx"

step "smoke test"
docker run --rm --network none --read-only \
    --tmpfs /workspace:uid=1000,gid=1000 --tmpfs /tmp "$IMAGE" \
    python3 -I -c 'import sys, numpy, pandas, matplotlib, scipy, sympy, IPython
print("    python", sys.version.split()[0], "numpy", numpy.__version__, "pandas", pandas.__version__,
      "matplotlib", matplotlib.__version__, "scipy", scipy.__version__, "sympy", sympy.__version__,
      "IPython", IPython.__version__)'

NEW_IMAGE_ID="$(docker image inspect -f '{{.Id}}' "$IMAGE")"
if [[ -n "$OLD_IMAGE_ID" && "$OLD_IMAGE_ID" != "$NEW_IMAGE_ID" ]]; then
    # The previous build lost its tag; drop it unless something still uses it.
    docker image rm "$OLD_IMAGE_ID" >/dev/null 2>&1 || true
fi

step "done"
size="$(docker image inspect -f '{{.Size}}' "$IMAGE")"
printf '    %s (%s, %d MB), build hash %s, agent protocol %s, %ds in all\n' \
    "$IMAGE" "${NEW_IMAGE_ID:7:12}" $((size / 1000000)) "$BUILD_HASH" "$AGENT_PROTOCOL" $((SECONDS - START))
