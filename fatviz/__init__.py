"""fatviz: learn, see and use the FAT (Fast Approximated Triplet) loss."""

from fatviz.errors import FatvizError

__all__ = ["FatvizError"]
__version__ = "0.1.0"
