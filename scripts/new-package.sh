#!/usr/bin/env bash
# Lays out a new workspace package: scripts/new-package.sh <dir> <name> "<description>"
# It writes package.json, tsconfig.json and typedoc.json; src/index.ts is left to the author.
set -euo pipefail
dir=$1 name=$2 desc=$3
mkdir -p "$dir/src" "$dir/test"
cat > "$dir/package.json" <<JSON
{
  "name": "@vipsec/$name",
  "version": "0.1.0",
  "description": "$desc",
  "license": "Apache-2.0",
  "type": "module",
  "exports": {
    ".": {
      "vipsec-source": "./src/index.ts",
      "types": "./dist/src/index.d.ts",
      "import": "./dist/src/index.js"
    }
  },
  "types": "./dist/src/index.d.ts",
  "files": ["dist/src", "src"],
  "scripts": {
    "build": "tsc -b"
  },
  "dependencies": {}
}
JSON
cat > "$dir/tsconfig.json" <<JSON
{
  "extends": "../../tsconfig.base.json",
  "compilerOptions": {
    "rootDir": ".",
    "outDir": "dist"
  },
  "include": ["src", "test"],
  "references": []
}
JSON
cat > "$dir/typedoc.json" <<JSON
{
  "\$schema": "https://typedoc.org/schema.json",
  "extends": ["../../typedoc.base.json"],
  "entryPoints": ["src/index.ts"]
}
JSON
