# The Sluice Node addon: src/addon.cc (which calls only the C ABI, sluice.h) compiled together
# with the engine's own sources (core/ and capi/, resolved by scripts/native.js: the repository
# checkout, or the copy a packed tarball carries in native/). RocksDB, protobuf and SQLite (the
# engine's query tables) come from the system (Debian: librocksdb-dev, libprotobuf-dev,
# protobuf-compiler, libsqlite3-dev).
{
  "targets": [
    {
      "target_name": "sluice_node",
      "actions": [],
      "variables": {
        "sluice_gen": "<!(node scripts/native.js gen)"
      },
      "sources": [
        "src/addon.cc",
        "<!@(node scripts/native.js sources)"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node scripts/native.js includes)"
      ],
      "defines": [
        "NDEBUG",
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-frtti", "-fvisibility=hidden"],
      "libraries": ["-lrocksdb", "-lprotobuf", "-lsqlite3", "-lpthread"]
    }
  ]
}
