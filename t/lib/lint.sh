#!/bin/sh
# The cheap rules of nginx style: 80 columns, no tabs, no
# trailing spaces, no // comments, in C sources and headers.

cd "$(dirname "$0")/../.." || exit 1

status=0
files=$(ls src/*.[ch] src/tools/*.c ngx_module/*.[ch] t/unit/*.[ch] t/fuzz/*.[ch] \
        2>/dev/null)

for f in $files; do
    awk -v f="$f" '
        length($0) > 80   { print f ":" NR ": longer than 80 columns"; bad = 1 }
        /\t/              { print f ":" NR ": tab"; bad = 1 }
        /[ \t]+$/         { print f ":" NR ": trailing white space"; bad = 1 }
        /^[^"]*([^:"]|^)\/\//  { print f ":" NR ": // comment"; bad = 1 }
        END               { exit bad }
    ' "$f" || status=1
done

if [ $status = 0 ]; then
    echo "lint: ok ($(echo $files | wc -w) files)"
fi

exit $status
