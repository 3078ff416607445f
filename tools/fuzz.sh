#!/usr/bin/env bash
# Run every cargo-fuzz target under fuzz/*/ for SECONDS each (default 60).
# cargo-fuzz needs nightly-only rustc flags; this machine has only the stable
# toolchain, so RUSTC_BOOTSTRAP=1 lets stable rustc accept them.
# Each target starts from its working corpus (fuzz/DIR/corpus/TARGET, not in
# git) plus the seed corpora named in fuzz/DIR/seeds, one per line: a
# checked-in directory (earlier finds), or gen:CRATE for seeds that CRATE's
# corpus test builds (written into the working corpus through
# SNAPGUARD_SEED_DIR). The cargo tests replay them all.
# Usage: tools/fuzz.sh [SECONDS] [TARGET-FILTER]
set -euo pipefail
secs=${1:-60}
filter=${2:-}
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cd "$(dirname "$0")/.."
for dir in fuzz/*/; do
	[ -f "$dir/Cargo.toml" ] || continue
	for t in $(cargo fuzz list --fuzz-dir "$dir"); do
		[ -z "$filter" ] || [[ $t == *$filter* ]] || continue
		echo "== fuzz $dir $t for ${secs}s"
		mkdir -p "$dir/corpus/$t"
		log=$(mktemp)
		rc=0
		seeds=()
		if [ -f "$dir/seeds" ]; then
			while read -r sd; do
				case "$sd" in
				'') ;;
				gen:*)
					SNAPGUARD_SEED_DIR="$PWD/$dir/corpus/$t" \
						cargo test -q --locked -p "${sd#gen:}" --test corpus >/dev/null
					;;
				*) seeds+=("$sd") ;;
				esac
			done <"$dir/seeds"
		fi
		cargo fuzz run --fuzz-dir "$dir" "$t" "$dir/corpus/$t" "${seeds[@]}" -- \
			-max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1 || rc=$?
		grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==|SUMMARY)' "$log" || true
		if [ $rc -ne 0 ]; then
			tail -n 40 "$log"; rm -f "$log"
			echo "fuzz target $t failed"; exit 1
		fi
		rm -f "$log"
	done
done
