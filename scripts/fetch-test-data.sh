#!/usr/bin/env bash
# Puts the REAL published dataset files that the real-data tests (tests/real_data.rs) check into
# one folder, each verified against the sha256 pinned below:
#
#   mmau/mmau-test-mini.json            MMAU test-mini (Sakshi113/MMAU)
#   mmau/LICENSE
#   op-ttrav/mmau_test_mini_test.json   OP-TTRAV's lists (mvideet/OP-TTRAV, verl/data/...)
#   op-ttrav/OmniVideo_test_sanity.json
#   op-ttrav/MATH-TTT_test.json
#   op-ttrav/AIME-TTT_test.json
#   op-ttrav/LICENSE
#   alpaca_eval/gpt4_1106_preview_outputs.json   AlpacaEval's GPT-4 Turbo outputs (tatsu-lab/alpaca_eval)
#   alpaca_eval/leaderboard_lc.csv               AlpacaEval 2.0 leaderboard with length-controlled win rates
#   alpaca_eval/LICENSE
#
# With --alpaca-annotations, also (about 30 MB more; the opt-in check tests/alpaca_eval_real.rs):
#
#   alpaca_eval/annotations/<model>.json   AlpacaEval 2's published annotations (annotator
#                                          weighted_alpaca_eval_gpt4_turbo) of claude-2.1,
#                                          gpt-3.5-turbo-1106, OpenHermes-2.5-Mistral-7B,
#                                          Qwen-14B-Chat, vicuna-13b-v1.5, alpaca-7b, gpt4_gamed,
#                                          NullModel (results/<model>/weighted_alpaca_eval_gpt4_turbo/)
#   alpaca_eval/alpaca_eval_clf.txt        its judge prompt (evaluators_configs/alpaca_eval_clf_gpt4_turbo/)
#
# Source: with TTRAV_DATA_DIR set, the files are copied from that folder (same layout as above);
# otherwise each is downloaded with curl from its repository at a pinned commit (the addresses
# below). Either way a file whose sha256 differs from the pinned one is an error, and nothing
# unverified is left in DEST. Idempotent: a file already in DEST with the right hash is kept.
#
# Usage: scripts/fetch-test-data.sh [--alpaca-annotations] [DEST]
#                                              (DEST default: target/test-data in the repository)
# Then:  cargo test --test real_data           (reads DEST from TTRAV_TEST_DATA, default
#                                               target/test-data)
#        cargo test --test alpaca_eval_real    (after --alpaca-annotations)
# Space: about 3 MB (33 MB with --alpaca-annotations).
# Needs: bash, curl (when downloading), sha256sum (or shasum, or python3).

set -euo pipefail

log() { printf '[fetch-test-data] %s\n' "$*" >&2; }
die() { printf '[fetch-test-data] error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }

REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)

# ---- pinned sources: sha256, path in DEST, address ---------------------------------------------

MMAU="https://raw.githubusercontent.com/Sakshi113/MMAU/110127f54c0dfba3faa5ec9feee4a7e4148679c5"
OPTTRAV="https://raw.githubusercontent.com/mvideet/OP-TTRAV/06cef1c15572cb342cd3778b4bbe97275bd6a2de"
ALPACA="https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/cd543a149df89434d8a54582c0151c0b945c3d20"

FILES="
9f18fda99f8dbc2bc5ecd6323fb5063309f54969810b5c6f1caeb3b8d904cf1c mmau/mmau-test-mini.json $MMAU/mmau-test-mini.json
c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4 mmau/LICENSE $MMAU/LICENSE
bbec293737385c5c7ad08ced9d372f488765bbdf51b9134701b0398e139686c1 op-ttrav/mmau_test_mini_test.json $OPTTRAV/verl/data/MMAU/test_mini_test.json
94c4343d75ed7518f66431f98f281dc82b7de3109259891eaff78e10a1ddfd06 op-ttrav/OmniVideo_test_sanity.json $OPTTRAV/verl/data/OmniVideo/test_sanity.json
c1680e2e2e034486ad1b7f5aa6dec7ce47ec801769d011cc5d6934ac139fcd46 op-ttrav/MATH-TTT_test.json $OPTTRAV/verl/data/MATH-TTT/test.json
f52c531f6919731115b491d056be701e760e115d4b1cd5b57f48de2251a85d66 op-ttrav/AIME-TTT_test.json $OPTTRAV/verl/data/AIME-TTT/test.json
8560d664cc784c6d593a57fcc7dc47f6985f62345d13251ae3a2292fa6672faa op-ttrav/LICENSE $OPTTRAV/LICENSE
83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4 alpaca_eval/gpt4_1106_preview_outputs.json $ALPACA/results/gpt4_1106_preview/model_outputs.json
fe32bf85c2f7429038faa4c9a884d1d131726454ff84a4b810a91c1c7a2aa0e9 alpaca_eval/leaderboard_lc.csv $ALPACA/src/alpaca_eval/leaderboards/data_AlpacaEval_2/weighted_alpaca_eval_gpt4_turbo_leaderboard.csv
6e175e9dbe26bb42de8367bf2215301a71b3f403243a2eefc56378b307638be8 alpaca_eval/LICENSE $ALPACA/LICENSE
"

AE2=$ALPACA/results
ANNOTATIONS="
8dfc94501f8b783d96facd9158e0333dc83c30112c5c1927838fdcc2ee00d213 alpaca_eval/annotations/claude-2.1.json $AE2/claude-2.1/weighted_alpaca_eval_gpt4_turbo/annotations.json
4558bed562144780dfcdd5ff55cafc17d76eea62eca143cfcc7ac5f3c154de10 alpaca_eval/annotations/gpt-3.5-turbo-1106.json $AE2/gpt-3.5-turbo-1106/weighted_alpaca_eval_gpt4_turbo/annotations.json
196f38b5f7fb3c3242635cc4a8175f2c7b39d5648979f086ec7ba93c99e190ff alpaca_eval/annotations/OpenHermes-2.5-Mistral-7B.json $AE2/OpenHermes-2.5-Mistral-7B/weighted_alpaca_eval_gpt4_turbo/annotations.json
94623679606fce2f829c542484a7a21cea2eece358a76f814e5838160eddf056 alpaca_eval/annotations/Qwen-14B-Chat.json $AE2/Qwen-14B-Chat/weighted_alpaca_eval_gpt4_turbo/annotations.json
3c9f7d06313e09ad25b105c94abce82f5d6316699d23867f401d8408dda284da alpaca_eval/annotations/vicuna-13b-v1.5.json $AE2/vicuna-13b-v1.5/weighted_alpaca_eval_gpt4_turbo/annotations.json
41047c654c6c5ddc0290fb207367e3f458d22692045eb41927eb64103a2cb764 alpaca_eval/annotations/alpaca-7b.json $AE2/alpaca-7b/weighted_alpaca_eval_gpt4_turbo/annotations.json
3f70f086d97cf7f1c9b1b2ad16a2ac189a95e75a08c9374780e174a1f11dbf02 alpaca_eval/annotations/gpt4_gamed.json $AE2/gpt4_gamed/weighted_alpaca_eval_gpt4_turbo/annotations.json
d8e6d6d8ad735b57149fe0d9cb307e095cdc8befee5f0a849e00d66912500be3 alpaca_eval/annotations/NullModel.json $AE2/NullModel/weighted_alpaca_eval_gpt4_turbo/annotations.json
784227e6dc2832fc08c43d2c8ea3a308e7523780187a1aaad2f85e30bac85f62 alpaca_eval/alpaca_eval_clf.txt $ALPACA/src/alpaca_eval/evaluators_configs/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt
"

# ---- helpers ----------------------------------------------------------------------------------

if command -v sha256sum >/dev/null 2>&1; then
    sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
    sha256_of() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
    sha256_of() { python3 -c 'import hashlib,sys
print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; }
fi

# check_file PATH SHA256 -> 0 when PATH is a file with that hash
check_file() { [ -f "$1" ] && [ "$(sha256_of "$1")" = "$2" ]; }

# ---- main -------------------------------------------------------------------------------------

case ${1-} in
    -h | --help) usage; exit 0 ;;
    --alpaca-annotations) FILES="$FILES$ANNOTATIONS"; shift ;;
esac
[ $# -le 1 ] || die "expected at most one argument besides --alpaca-annotations, DEST (see --help)"
DEST=${1:-$REPO_ROOT/target/test-data}
SOURCE=${TTRAV_DATA_DIR-}
if [ -n "$SOURCE" ]; then
    [ -d "$SOURCE" ] || die "TTRAV_DATA_DIR=$SOURCE is not a folder"
    log "copying from TTRAV_DATA_DIR=$SOURCE into $DEST"
else
    command -v curl >/dev/null 2>&1 || die "curl is needed to download (or set TTRAV_DATA_DIR to a local copy)"
    log "downloading into $DEST"
fi

fetched=0 kept=0
while read -r sha rel url; do
    [ -n "$sha" ] || continue
    target="$DEST/$rel"
    if check_file "$target" "$sha"; then
        kept=$((kept + 1))
        continue
    fi
    mkdir -p "$(dirname "$target")"
    part="$target.part"
    rm -f -- "$part"
    if [ -n "$SOURCE" ]; then
        [ -f "$SOURCE/$rel" ] || die "$SOURCE/$rel: no such file (TTRAV_DATA_DIR must hold the layout listed in --help)"
        cp -f -- "$SOURCE/$rel" "$part"
        from="$SOURCE/$rel"
    else
        curl -fsSL --retry 3 -o "$part" "$url" || { rm -f -- "$part"; die "$rel: download failed: $url"; }
        from=$url
    fi
    if ! check_file "$part" "$sha"; then
        got=$(sha256_of "$part")
        rm -f -- "$part"
        die "$rel: sha256 of $from is $got, not the pinned $sha"
    fi
    chmod u+w,a+r -- "$part"
    mv -f -- "$part" "$target"
    fetched=$((fetched + 1))
done <<<"$FILES"
log "done: $fetched fetched, $kept already there, all verified, in $DEST"
