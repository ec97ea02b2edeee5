"""bitbybit: a self-hostable Open API and signed-webhook platform for commerce and WhatsApp."""

__version__ = "0.1.0"
