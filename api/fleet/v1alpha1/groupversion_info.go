package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the fleet API.
	GroupVersion = schema.GroupVersion{Group: "fleet.jobset.x-k8s.io", Version: "v1alpha1"}

	// SchemeBuilder registers the fleet types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the fleet types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
