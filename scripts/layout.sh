# Sourced by the checks that must see nnc as it is installed. Tools that find a package's
# modules by walking one directory (import-linter, mypy) cannot follow nnc's three packages,
# which live side by side (dsl/, backend/, kernels/: [tool.setuptools.package-dir]); this
# makes $layout/nnc, holding backend/ and kernels/, of links to this checkout.
layout="$(mktemp -d)"
trap 'rm -rf "$layout"' EXIT
mkdir "$layout/nnc"
ln -s "$PWD"/dsl/*.py "$PWD/dsl/py.typed" "$layout/nnc/"
ln -s "$PWD/backend" "$layout/nnc/backend"
ln -s "$PWD/kernels" "$layout/nnc/kernels"
