"""An in-memory emulator of the Vyte v2 API ("the sandbox"), independent of the gateway's code.

It answers `/v2/auth/test`, `/v2/slots`, `/v2/slots/days`, `/v2/events` (+ `/{id}`, `/confirm`,
`/cancel`) and `/v2/hooks` like Vyte does, with the raw API key in `Authorization` (default
`SANDBOX_API_KEY`), and offers unauthenticated test controls under `/_sandbox/`:

    POST   /_sandbox/faults           {latency, error_rate, status, retry_after, hang,
                                       malformed, count, path, apply}; replaces the active fault
    GET    /_sandbox/faults           the active fault and how many requests it has left
    DELETE /_sandbox/faults           clear it
    GET    /_sandbox/stats            {"requests": {"GET /v2/slots": n, ...}}
    DELETE /_sandbox/stats            zero the counts
    POST   /_sandbox/reset            back to the seed: no events, hooks, faults or counts,
                                      and the configured settings
    GET    /_sandbox/settings         the switches below, as they are now
    PATCH  /_sandbox/settings         {hook_list_shape: "array"|"object", hook_batch: bool};
                                      until the next reset
    GET    /_sandbox/users            the seeded users, working hours, busy blocks and
                                      whether their booking page has auto_confirm
    PATCH  /_sandbox/users/{id}       {auto_confirm: bool}; until the next reset
    GET    /_sandbox/events           every event, cancelled ones included
    POST   /_sandbox/events/{id}/confirm|cancel   the invitee acts inside Vyte (hooks fire)
    GET    /_sandbox/deliveries       hook deliveries made so far and how many are under way
    POST   /_sandbox/deliveries/drain the same, once every delivery under way has finished

Where Vyte documents a behaviour two ways, a switch (SandboxConfig field, then
`/_sandbox/settings`) picks one: `hook_list_shape` is how `GET /v2/hooks` answers, a bare
array (the guide, default) or `{"hooks": [...]}` (the reference); `hook_batch` sends each
hook body as a one-element array (the reference's prose) instead of the bare object of its
example (default). Hook target URLs must be
https, as Vyte's reference says, unless `allow_http_hooks` is set (config only: `serve
--sandbox` sets it for its own loopback gateway).
`auto_confirm_users` (config, then `/_sandbox/users/{id}`) names users whose booking page
has Vyte's `auto_confirm`: their `vyteme` events come back from the create confirmed, and
fire `event.created` and `event.confirmed`.

Other documented behaviours, always on: `GET /v2/events?q=` is a regular expression on the
title (case-insensitive; an invalid one is 400); `event.updated` fires only when a confirmed
event is edited; a confirm without `d` picks the closest date and names it in
`confirmed.date_id`, leaving every `dates[].confirmed` false as Vyte's samples do.

Seeded people (`seed.json`; ids and emails are stable, tests rely on them). Hours are
wall-clock time in the person's own zone. The sandbox, like Vyte's API, answers slots for any
dates asked, past ones included; the gateway in front of it never offers the past.

    5f3feb7821046c3bb9327e6a  John Doe        john.doe@example.com
        Europe/Paris       every day 00:00-24:00
    5f3feb7821046c3bb9327e6b  Jane Smith      jane@example.com
        America/New_York   Mon-Fri 09:00-17:00
    5f3feb7821046c3bb9327e6c  Priya Sharma    priya@example.com
        Asia/Kolkata       Mon-Fri 10:00-18:00 (+05:30)
    5f3feb7821046c3bb9327e6d  Anish Shrestha  anish@example.com
        Asia/Kathmandu     Sun-Fri 10:00-17:00 (+05:45)
    5f3feb7821046c3bb9327e6e  Olivia Brown    olivia@example.com
        Australia/Sydney   Mon-Fri 08:00-16:00
    5f3feb7821046c3bb9327e6f  Marie Dupont    marie@example.com, marie.dupont@example.com
        Europe/Paris       Mon, Tue, Thu, Fri 09:00-12:00 and 14:00-18:00; Wed 09:00-12:00
    5f3feb7821046c3bb9327e70  Oscar Away      oscar@example.com
        Europe/London      no working hours: never free

Busy blocks, on days counted from the date the seed is read (UTC) so they never fall into the
past, at wall-clock times in each person's zone: on the first Thursday at least two days ahead,
John 12:00-14:00, Jane and Priya 13:00-14:00, and John 09:30-10:30 the Friday after; John
09:00-12:00 on the first Monday and Jane 10:00-11:00 on the first Tuesday at least two days
ahead; John 14:00-15:30 on the first Wednesday at least 45 days ahead. The organization is
`5f3feb7821046c3bb9327e00`.
"""

from .app import create_sandbox_app, run_sandbox, start_sandbox
from .config import SANDBOX_API_KEY, SandboxConfig

__all__ = [
    "SANDBOX_API_KEY",
    "SandboxConfig",
    "create_sandbox_app",
    "run_sandbox",
    "start_sandbox",
]
