"""Training: the loop every model goes through (trainer.py) and data-parallel training (distributed.py).

The package is also the Python API's `mscbench.train(model, dataset, settings=...)` (mscbench/api.py): once
imported, a subpackage is its parent's attribute of that name, so the API's function could not be; the
package forwards a call to it instead.
"""

import sys
import types


class CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        """Train (or reuse) one run and evaluate it: `mscbench.api.train`, same arguments and result."""
        from mscbench.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = CallablePackage
