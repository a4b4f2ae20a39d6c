"""Chat channels: each turns platform messages into InboundMessage and sends the outbox back."""
