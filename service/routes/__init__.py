"""One APIRouter per resource: validate, delegate, respond."""
