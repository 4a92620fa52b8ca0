"""blkd's QAPI code generator: schema (qapi/*.json) in, C out."""
