"""Data as code: pinned sources -> registered filters -> content-hashed training set.

    uv run ft data build   # writes data/build/{train,eval}.jsonl and data.lock
    uv run ft data check   # fails if data or a filter changed and data.lock did not

`sources.py` reads rows, `filters.py` holds the filters (one small pure function
each), `build.py` runs the chain (`pool.py`: over worker processes) and writes or checks
the lock; `serialize.py` is the canonical row serialization the hashes are taken over;
`lock.py` reads, writes and compares data.lock; `loader.py` feeds training.
"""
