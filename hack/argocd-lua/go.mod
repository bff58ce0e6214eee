module cxone-skill-operator/hack/argocd-lua

go 1.23

require (
	github.com/yuin/gopher-lua v1.1.2
	go.yaml.in/yaml/v2 v2.4.2
	sigs.k8s.io/yaml v1.6.0
)
