"""Separate songs into stems: decide, claim, submit (paid), poll or take the callback, download, settle.

Modules, pure first: ``actions`` (the per-key decision: what may be paid for, never twice),
``poll_timing`` (when to poll a submitted job), ``window`` (the rolling window of jobs in
flight), ``progress`` (the display seam); then I/O: ``planning`` (each key classified against
the ledger, and the run's ``Plan``), ``reconcile`` (intents a crashed run left behind),
``submit`` (claim, then the paid request), ``polling`` (record-info until the job ends),
``downloads`` (stems: streamed, verified, moved into place durably), ``mixes`` (a song's
original mix, for the quality analysis), ``pipeline`` (one job through its stages, one batch
of jobs in the window), and ``steps`` (the Prefect tasks the flow in ``flows/separate.py`` runs).

Promises
--------
* Never pay twice: the claim (an ``intent`` job and its spend row) is committed before the paid
  request leaves; an ambiguous outcome is ``unknown`` and is never re-sent unless forced.
* Polls, downloads and reconciliation are free and may be repeated; a submit is never retried
  by Prefect (every step has ``retries=0``).
* A stem is on disk under its final name only after it was streamed under a byte cap, decoded
  end to end and fsynced; the rename is the commit.
"""
