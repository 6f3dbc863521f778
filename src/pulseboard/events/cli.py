"""``flask events …``: publish (one event, or a batch of JSON lines), consume, prune, the
demo producer and the dead letters."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from ..extensions import db
from . import bus, dead_letters, store
from .envelope import InvalidEnvelope, from_producer, loads, new_envelope
from .producer import Producer, PublishError
from .service import run_service
from .topology import Topology

events_cli = AppGroup("events", help="Publish and consume events.")


def _producer() -> Producer:
    """A producer for this command, refused where its events could reach no server."""
    url = current_app.config["BROKER_URL"]
    if bus.is_in_process(url):
        raise click.ClickException(
            f"BROKER_URL is {url}: events published by this command would stay in its own "
            "process and reach no server. Use filesystem:// (make dev's default) to reach a "
            "server on this host, or RabbitMQ (amqp://)."
        )
    return Producer.from_config(current_app.config)


@events_cli.command("publish")
@click.option("--topic", required=True, help="Topic, e.g. market.ticks")
@click.option("--type", "type_", required=True, help="Event type, e.g. tick")
@click.option("--payload", default="{}", show_default=True, help="JSON object")
@click.option("--key", default=None, help="Optional key, e.g. a symbol")
def publish_command(topic: str, type_: str, payload: str, key: str | None) -> None:
    """Publish one event and print its id."""
    try:
        data = loads(payload.encode(), "--payload", current_app.config["EVENT_MAX_DEPTH"])
    except InvalidEnvelope as error:
        raise click.BadParameter(str(error), param_hint="--payload") from None
    config = current_app.config
    try:
        envelope = new_envelope(
            topic, type_, data, key, config["EVENT_MAX_BYTES"], config["EVENT_MAX_DEPTH"]
        )
    except InvalidEnvelope as error:
        raise click.ClickException(f"invalid event: {error}") from None
    producer = _producer()  # a bad event is refused whatever the bus
    try:
        [event_id] = producer.publish_envelopes([envelope])
    except PublishError as error:
        raise click.ClickException(str(error)) from None
    finally:
        producer.close()
    click.echo(event_id)


# Lines validated and then published together: memory stays bounded on an endless pipe,
# and a chunk's ids are printed as soon as the broker has confirmed all of them.
CHUNK_LINES = 5000


@events_cli.command("publish-batch")
@click.argument("source", type=click.File("r", encoding="utf-8"), default="-")
@click.option(
    "--unconfirmed",
    "unconfirmed_file",
    type=click.File("w", encoding="utf-8"),
    default=None,
    help="On failure, write the events the broker did not confirm here, as JSON lines "
    "with their ids: publish that file again and each is stored once.",
)
def publish_batch_command(source, unconfirmed_file) -> None:
    """Publish events from JSON lines (SOURCE, or stdin) and print each id once confirmed.

    A line is an object like the ingest API's: topic, type, payload and an optional
    key, or a whole envelope with its own id and timestamp.  Publishes are pipelined
    (PUBLISH_CONFIRM_WINDOW in flight)."""
    config = current_app.config
    producer = _producer()
    try:
        for chunk in _numbered_chunks(source, CHUNK_LINES):
            envelopes = [_envelope_of_line(number, line, config) for number, line in chunk]
            try:
                click.echo("\n".join(producer.publish_envelopes(envelopes)))
            except PublishError as error:
                _report_unconfirmed(chunk, envelopes, error, unconfirmed_file)
    finally:
        producer.close()


def _numbered_chunks(source, size: int):
    """Lists of up to ``size`` (line number, text) pairs of the non-blank lines."""
    chunk = []
    for number, line in enumerate(source, 1):
        if line.strip():
            chunk.append((number, line))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _envelope_of_line(number: int, line: str, config):
    try:
        item = loads(line.encode("utf-8", "surrogatepass"), "line", config["EVENT_MAX_DEPTH"])
        return from_producer(item, config["EVENT_MAX_BYTES"], config["EVENT_MAX_DEPTH"])
    except InvalidEnvelope as error:
        raise click.ClickException(
            f"line {number}: {error} (nothing from the chunk of this line on was published; "
            "the ids printed are of events stored)"
        ) from None


def _report_unconfirmed(chunk, envelopes, error: PublishError, unconfirmed_file) -> None:
    """Print the ids the broker confirmed, then fail naming the lines it did not."""
    missing = set(error.unconfirmed)
    for envelope in envelopes:
        if envelope.id not in missing:
            click.echo(envelope.id)
    lines = [number for (number, _), e in zip(chunk, envelopes, strict=True) if e.id in missing]
    if unconfirmed_file is not None:
        for envelope in envelopes:
            if envelope.id in missing:
                unconfirmed_file.write(envelope.to_json().decode() + "\n")
    where = f"written to {unconfirmed_file.name}" if unconfirmed_file else "not written"
    raise click.ClickException(
        f"{error}\nnot confirmed: lines {_ranges(lines)} ({where}); later lines were not read"
    )


def _ranges(numbers: list[int]) -> str:
    """``1-3, 7`` for [1, 2, 3, 7]."""
    spans: list[list[int]] = []
    for number in numbers:
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


@events_cli.command("consume")
def consume_command() -> None:
    """Run the consumer service until SIGTERM or Ctrl-C."""
    run_service(current_app._get_current_object())


@events_cli.command("prune")
def prune_command() -> None:
    """Delete events past the configured retention now."""
    config = current_app.config
    deleted = store.prune(db.session, config["EVENT_RETENTION"], config["EVENT_RETENTION_COUNT"])
    click.echo(f"deleted {deleted} events")


@events_cli.command("demo")
@click.option("--rate", default=5.0, show_default=True, help="Market ticks per second")
@click.option("--duration", default=0.0, help="Seconds to run (0: until Ctrl-C)")
@click.option("--symbols", default="ACME,GLOBX,INITECH,UMBRL", show_default=True)
def demo_command(rate: float, duration: float, symbols: str) -> None:
    """Emit realistic demo streams: market ticks, host metrics, system notices."""
    from .demo import run_demo

    producer = _producer()
    try:
        sent = run_demo(producer, rate=rate, duration=duration, symbols=symbols.split(","))
    finally:
        producer.close()
    click.echo(f"published {sent} events")


@events_cli.command("dead-letters")
@click.option("--count", default=dead_letters.SHOWN, show_default=True, help="Most shown")
def dead_letters_command(count: int) -> None:
    """Show the oldest dead letters with their reason; every one stays in the queue.

    Requeue or discard one on the admin System page."""
    config = current_app.config
    topology = Topology.from_config(config)
    queue = topology.dead_letter_queue.name
    try:
        letters = dead_letters.peek(
            config["BROKER_URL"], topology, config["BROKER_CHECK_TIMEOUT"], limit=count
        )
    except Exception as error:  # the broker may be down: say so, as the System page does
        raise click.ClickException(
            f"could not read {queue}: {type(error).__name__}: {error}"
        ) from None
    if not letters:
        click.echo(f"{queue} is empty")
    for letter in letters:
        click.echo(f"{letter.fingerprint} {letter.routing_key} ({letter.size} bytes)")
        click.echo(f"  reason: {letter.reason}")
        click.echo(f"  {letter.preview}")
