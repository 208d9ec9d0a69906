"""One APIRouter per resource: parse, delegate, render."""
