"""bridge: posts each new story from news sites and feeds to social networks, once."""

__version__ = "0.1.0"
