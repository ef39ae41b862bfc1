// The seed flow through openapi-fetch, typed by openapi-typescript's `schema.d.ts`:
// availability -> create (201) -> async create (202) + polling -> confirm -> cancel ->
// reschedule -> list page by page.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";
import { BASE_URL, JOHN, TOKEN, check, dayFromNow, main, sleep } from "./common";

type Booking = components["schemas"]["Booking"];
type Operation = components["schemas"]["Operation"];
type BookingRequest = components["schemas"]["BookingRequest"];

// 201 and 202 carry different schemas; openapi-fetch gives `data` as their union and the
// shapes tell them apart (an Operation has `attempts`, a Booking has not).
function isOperation(answer: Booking | Operation): answer is Operation {
  return "attempts" in answer;
}

const client = createClient<paths>({
  baseUrl: BASE_URL,
  headers: { Authorization: `Bearer ${TOKEN}` },
});

main(async () => {
  const first = dayFromNow(30);
  const availability = await client.GET("/v1/availability", {
    params: {
      query: { participants: JOHN, duration: 60, from: first, to: dayFromNow(31), timezone: "Europe/Paris" },
    },
  });
  check(availability.data !== undefined, `availability: ${JSON.stringify(availability.error)}`);
  const slots = availability.data.slots ?? [];
  check(slots.length >= 2, "at least two slots");
  const [chosen, later] = [slots[0], slots[slots.length - 1]];

  // `timezone` and `check_availability` may be left out: the gateway fills them in.
  const request: BookingRequest = {
    organizer: JOHN,
    title: "Meeting with Quentin Tarantino",
    start: chosen.start,
    end: chosen.end,
    invitees: [{ email: "quentin.tarantino@hollywood.com", full_name: "Quentin Tarantino" }],
  };
  const created = await client.POST("/v1/bookings", {
    body: request,
    params: { header: { "Idempotency-Key": "openapi-fetch-1" } },
  });
  check(created.response.status === 201 && created.data !== undefined, "created");
  check(!isOperation(created.data), "a 201 is a booking");
  const booking: Booking = created.data;
  check(booking.status === "requested" && booking.version === 1, "requested, version 1");

  const taken = await client.POST("/v1/bookings", { body: request });
  check(taken.error?.type === "/problems/slot-unavailable", "the slot is taken");
  check(taken.error.status === 409, "409");

  const accepted = await client.POST("/v1/bookings", {
    body: { ...request, title: "Follow-up", start: later.start, end: later.end },
    params: { header: { Prefer: "respond-async" } },
  });
  check(accepted.response.status === 202 && accepted.data !== undefined, "accepted");
  check(isOperation(accepted.data), "a 202 is an operation");
  let operation: Operation = accepted.data;
  for (let tries = 0; operation.status === "pending"; tries++) {
    check(tries < 150, "the operation finishes");
    await sleep(100);
    const polled = await client.GET("/v1/operations/{operation_id}", {
      params: { path: { operation_id: operation.id } },
    });
    check(polled.data !== undefined, "polled");
    operation = polled.data;
  }
  check(operation.status === "succeeded" && typeof operation.booking_id === "string", "succeeded");

  const confirmed = await client.POST("/v1/bookings/{booking_id}/confirm", {
    params: { path: { booking_id: booking.id } },
  });
  check(confirmed.data !== undefined && !isOperation(confirmed.data), "confirmed");
  check(confirmed.data.status === "confirmed" && confirmed.data.version === 2, "version 2");

  const cancelled = await client.POST("/v1/bookings/{booking_id}/cancel", {
    params: { path: { booking_id: operation.booking_id } },
  });
  check(cancelled.data !== undefined && !isOperation(cancelled.data), "cancelled");
  check(cancelled.data.status === "cancelled", "cancelled status");

  // Into the first half of its own time: that time counts as free for it.
  const halfEnd = new Date(new Date(booking.start).getTime() + 30 * 60_000).toISOString();
  const moved = await client.POST("/v1/bookings/{booking_id}/reschedule", {
    params: { path: { booking_id: booking.id } },
    body: { start: booking.start, end: halfEnd },
  });
  check(moved.data !== undefined && !isOperation(moved.data), "moved");
  check(moved.data.version === 3 && Date.parse(moved.data.end) === Date.parse(halfEnd), "new end");
  const stuck = await client.POST("/v1/bookings/{booking_id}/reschedule", {
    params: { path: { booking_id: operation.booking_id } },
    body: { start: booking.start, duration: 30 },
  });
  check(stuck.error?.type === "/problems/booking-cancelled", "a cancelled booking stays put");

  const listed: string[] = [];
  let cursor: string | undefined;
  for (let pages = 0; ; pages++) {
    check(pages < 10, "the pages end");
    const page = await client.GET("/v1/bookings", { params: { query: { limit: 1, cursor } } });
    check(page.data !== undefined, `listed: ${JSON.stringify(page.error)}`);
    listed.push(...page.data.bookings.map((b: Booking) => b.id));
    if (page.data.next_cursor === null) break;
    cursor = page.data.next_cursor;
  }
  // The service may hold other flows' bookings too: ours come once each, by start.
  const ours = listed.filter((id) => id === booking.id || id === operation.booking_id);
  check(new Set(listed).size === listed.length, `each booking once: ${listed}`);
  check(ours.join() === [booking.id, operation.booking_id].join(), `by start: ${listed}`);

  const missing = await client.GET("/v1/bookings/{booking_id}", {
    params: { path: { booking_id: "0".repeat(24) } },
  });
  check(missing.error?.type === "/problems/booking-not-found", "404 is a problem");
});
