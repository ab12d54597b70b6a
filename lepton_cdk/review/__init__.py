"""Pull-request review of synthesized stacks: what they change (from a Terraform plan or a static diff),
what the change costs, what it risks (no cdktf import: reads plain Terraform JSON and plan JSON)."""

from .changes import AttributeChange, ResourceChange, StackChanges, TypeChanges, diff_stack, plan_changes, static_changes
from .costs import CostLine, node_group_costs, stack_costs, transfer_cost
from .errors import CatalogError, ReviewError
from .infracost import infracost_usage_yaml
from .plan import TerraformPlan, parse_plan, read_plan
from .prices import PriceCatalog, PriceRow, load_catalog, parse_catalog
from .pricing import CostComponent, Inventory, ResourceCost, StackCost, UsageAssumptions, classify, stack_cost
from .recommend import Candidate, candidate_to_dict, recommend, render_recommendation
from .report import BUDGET_EXIT_CODE, COMMENT_MARKER, BudgetCheck, Review, build_review, render_markdown, review_to_dict
from .resources import StackDocument, StackResources, read_stack_documents, read_stacks
from .terraform import PlanAttempt, plan_from_state
from .traffic import TrafficStep
from .uploads import ManifestCheck, UploadFinding, check_manifest_uploads

__all__ = [
    "BUDGET_EXIT_CODE", "COMMENT_MARKER", "AttributeChange", "BudgetCheck", "Candidate", "CatalogError", "CostComponent", "CostLine",
    "Inventory", "ManifestCheck", "PlanAttempt", "PriceCatalog", "PriceRow", "ResourceChange", "ResourceCost", "Review",
    "ReviewError", "StackChanges", "StackCost", "StackDocument", "StackResources", "TerraformPlan", "TrafficStep",
    "TypeChanges", "UploadFinding", "UsageAssumptions", "build_review", "candidate_to_dict", "check_manifest_uploads", "classify",
    "diff_stack", "infracost_usage_yaml", "load_catalog", "node_group_costs", "parse_catalog", "parse_plan", "plan_changes",
    "plan_from_state", "read_plan", "read_stack_documents", "read_stacks", "recommend", "render_markdown", "render_recommendation",
    "review_to_dict", "stack_cost", "stack_costs", "static_changes", "transfer_cost",
]
