package testenv

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"

	"github.com/jobset-fleet/jobset-fleet/api"
)

// Scheme is the components' scheme (api.NewScheme) plus the CRD kind the
// harness installs with.
func Scheme() *runtime.Scheme {
	s := api.NewScheme()
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	return s
}
