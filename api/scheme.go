// Package api holds the fleet's APIs: the JobSet API (jobset), the fleet's
// own (fleet), and AddToScheme, which registers them with every other kind
// the hub and the agents read or write.
package api

import (
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// AddToScheme registers the built-in kinds, the JobSet and fleet APIs and
// cluster-inventory-api's.
func AddToScheme(s *runtime.Scheme) error {
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme,
		jobset.AddToScheme,
		fleet.AddToScheme,
		clusterinventory.AddToScheme,
	} {
		if err := add(s); err != nil {
			return err
		}
	}
	return nil
}

// NewScheme is a scheme with AddToScheme's kinds.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		panic(err) // static registrations
	}
	return s
}
