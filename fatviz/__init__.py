"""fatviz: learn, see and use the FAT (Fast Approximated Triplet) loss."""

# Datasets that live in their own module register themselves on import.
import fatviz.data.reid_synth  # noqa: E402,F401  (the reid-synth dataset)
import fatviz.data.user_data  # noqa: E402,F401  (the table and upload datasets: your own data)
from fatviz.errors import FatvizError

__all__ = ["FatvizError"]
__version__ = "0.1.0"
