// The seed flow through openapi-generator's typescript-fetch client.
import {
  AvailabilityApi,
  BookingsApi,
  Configuration,
  OperationFromJSON,
  OperationsApi,
  ProblemFromJSON,
  ResponseError,
  type Booking,
  type BookingRequest,
  type Operation,
} from "./fetch";
import { BASE_URL, JOHN, TOKEN, check, dayFromNow, main, sleep } from "./common";

const config = new Configuration({ basePath: BASE_URL, accessToken: async () => TOKEN });
const availability = new AvailabilityApi(config);
const bookings = new BookingsApi(config);
const operations = new OperationsApi(config);

main(async () => {
  const answer = await availability.getAvailability({
    participants: JOHN,
    duration: 60,
    from: new Date(dayFromNow(30)),
    to: new Date(dayFromNow(31)),
    timezone: "Europe/Paris",
  });
  const slots = answer.slots ?? [];
  check(slots.length >= 2, "at least two slots");
  const [chosen, later] = [slots[0], slots[slots.length - 1]];

  const request: BookingRequest = {
    organizer: JOHN,
    title: "Meeting with Quentin Tarantino",
    start: chosen.start,
    end: chosen.end,
    invitees: [{ email: "quentin.tarantino@hollywood.com" }],
  };
  // The typed method returns the 201 Booking.
  const booking: Booking = await bookings.createBooking({
    bookingRequest: request,
    idempotencyKey: "typescript-fetch-1",
  });
  check(booking.status === "requested" && booking.version === 1, "requested");

  // typescript-fetch has one return type per operation: with `Prefer: respond-async` read the
  // answer through the Raw method, whose status tells which schema the body has.
  const raw = await bookings.createBookingRaw({
    bookingRequest: { ...request, title: "Follow-up", start: later.start, end: later.end },
    prefer: "respond-async",
  });
  check(raw.raw.status === 202, "accepted");
  let operation: Operation = OperationFromJSON(await raw.raw.json());
  for (let tries = 0; operation.status === "pending"; tries++) {
    check(tries < 150, "the operation finishes");
    await sleep(100);
    operation = await operations.getOperation({ operationId: operation.id });
  }
  check(operation.status === "succeeded" && typeof operation.bookingId === "string", "done");

  const confirmed = await bookings.confirmBooking({ bookingId: booking.id });
  check(confirmed.status === "confirmed" && confirmed.version === 2, "confirmed");
  const cancelled = await bookings.cancelBooking({ bookingId: operation.bookingId });
  check(cancelled.status === "cancelled", "cancelled");

  // Into the first half of its own time: that time counts as free for it.
  const halfEnd = new Date(booking.start.getTime() + 30 * 60_000);
  const moved = await bookings.rescheduleBooking({
    bookingId: booking.id,
    rescheduleRequest: { start: booking.start, end: halfEnd },
  });
  check(moved.version === 3 && moved.end.getTime() === halfEnd.getTime(), "moved");

  const listed: string[] = [];
  let cursor: string | undefined;
  for (let pages = 0; ; pages++) {
    check(pages < 10, "the pages end");
    const page = await bookings.listBookings({ limit: 1, cursor });
    listed.push(...page.bookings.map((b) => b.id));
    if (page.nextCursor === null || page.nextCursor === undefined) break;
    cursor = page.nextCursor;
  }
  // The service may hold other flows' bookings too: ours come once each, by start.
  const ours = listed.filter((id) => id === booking.id || id === operation.bookingId);
  check(new Set(listed).size === listed.length, `each booking once: ${listed}`);
  check(ours.join() === [booking.id, operation.bookingId].join(), `by start: ${listed}`);

  try {
    await bookings.getBooking({ bookingId: "0".repeat(24) });
    check(false, "a missing booking is an error");
  } catch (err) {
    check(err instanceof ResponseError, `a ResponseError: ${String(err)}`);
    const problem = ProblemFromJSON(await err.response.json());
    check(problem.status === 404 && problem.type === "/problems/booking-not-found", "404 problem");
  }
});
