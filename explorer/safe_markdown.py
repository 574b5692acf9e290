"""The explorer's door to :mod:`planner.plans.safe_markdown` (pages import only ``explorer``): names
from outside made inert before they reach Streamlit's Markdown. The rules live in the planner, where
the Markdown report uses the same ones."""

from planner.plans.safe_markdown import SPECIAL, md_code, md_fence, md_text, plain

__all__ = ["SPECIAL", "md_code", "md_fence", "md_text", "plain"]
