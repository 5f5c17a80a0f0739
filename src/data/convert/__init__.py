"""The conversion framework every converter (census, criteo, multimnist) builds on.

- :mod:`.publish`: all-or-nothing publication: a conversion writes into a
  staging folder beside its target and swaps it in at the end, with the
  integrity record the reader checks;
- :mod:`.shards`: a split's rows into one MindRecord file or a series of
  shards of whole blocks;
- :mod:`.splits`: split plans (seeded per-line hashes, day-based time splits);
- :mod:`.textfile`: chunks of whole lines of plain or gzip'd text files;
- :mod:`.chunks` and :mod:`.workers`: passes over those chunks in forked
  worker processes, results back in order through shared memory;
- :mod:`.progress`: progress lines with rate and ETA, step timings;
- :mod:`.malformed`: the malformed-line policy (stop at the first, or skip,
  count and record them).

A converter keeps only what its format needs: finding its files, parsing a
line, its vocabularies or scaling, its feature map.
"""
