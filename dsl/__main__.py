"""``python -m nnc``: the same as the ``nnc`` command (see :mod:`nnc.cli`)."""

if __name__ == "__main__":
    from nnc.cli import main

    raise SystemExit(main())
