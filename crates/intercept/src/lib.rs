//! Intercept import (placeholder, being written).
