#!/usr/bin/env bash
# Copy the reports of a `qwenkit demo` run (report.md/.html and plots of each reproduction, and the index) into
# docs/reports/, so that the README can link measured results. Usage: scripts/publish_reports.sh [RUN_DIR ...]
set -euo pipefail
cd "$(dirname "$0")/.."
target=docs/reports
mkdir -p "$target"
for run in "${@:-runs/demo}"; do
  for report in "$run"/*/report.md; do
    name=$(basename "$(dirname "$report")")
    rm -rf "${target:?}/$name"
    mkdir -p "$target/$name"
    cp "$(dirname "$report")"/report.md "$(dirname "$report")"/report.html "$target/$name/"
    find "$(dirname "$report")" -maxdepth 1 -name '*.png' -exec cp {} "$target/$name/" \;
    if [ -d "$(dirname "$report")/plots" ]; then cp -r "$(dirname "$report")/plots" "$target/$name/"; fi
    # reports written before image links were made relative to the report carry the run prefix: strip it
    sed -i -e "s#](${run%/}/$name/#](#g" -e "s#src='${run%/}/$name/#src='#g" "$target/$name/report.md" \
      "$target/$name/report.html"
  done
  # the run's index, its links pointed at the Markdown reports (GitHub renders those)
  if [ -f "$run/index.md" ]; then
    sed -e 's#/report.html)#/report.md)#g' "$run/index.md" > "$target/index.md"
    cp "$run/index.html" "$target/index.html"
  fi
done
echo "published: $(ls "$target")"
