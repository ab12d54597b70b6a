"""Pull-request review of synthesized stacks: what they create, what they cost,
what they risk (no cdktf import: reads plain Terraform JSON)."""

from .changes import TypeChanges, diff_stack
from .costs import CostLine, node_group_costs, stack_costs, transfer_cost
from .errors import CatalogError, ReviewError
from .infracost import infracost_usage_yaml
from .prices import PriceCatalog, PriceRow, load_catalog, parse_catalog
from .recommend import Candidate, candidate_to_dict, recommend, render_recommendation
from .report import COMMENT_MARKER, Review, build_review, render_markdown, review_to_dict
from .resources import StackDocument, StackResources, read_stack_documents, read_stacks
from .uploads import ManifestCheck, UploadFinding, check_manifest_uploads

__all__ = [
    "COMMENT_MARKER", "Candidate", "CatalogError", "CostLine", "ManifestCheck", "PriceCatalog", "PriceRow", "Review", "ReviewError",
    "StackDocument", "StackResources", "TypeChanges", "UploadFinding", "build_review", "candidate_to_dict",
    "check_manifest_uploads", "diff_stack",
    "infracost_usage_yaml", "load_catalog", "node_group_costs", "parse_catalog", "read_stack_documents", "read_stacks",
    "recommend", "render_markdown", "render_recommendation", "review_to_dict", "stack_costs", "transfer_cost",
]
