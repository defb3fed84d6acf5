"""Provisioning at a kiosk: a local web app for the operator (`latticelock kiosk serve`).

- `station`: the device side (the store, the chip, the sources, one piece of work at a time), on the
  same device code the command line uses: `enrol`, `store`, `hardened`, `loop`, `lockout`;
- `chip`: the one connection to the microcontroller, reopened after a lost link;
- `enrolment` and `preview`: an enrolment as its page sees it, and the frames it is shown (memory only);
- `operators`: operator sessions, CSRF tokens and the sign-in limit;
- `app`: the Starlette app, its templates and static files.

The web framework is an optional extra (`pip install 'latticelock[kiosk]'`); only `app` imports it.
"""
