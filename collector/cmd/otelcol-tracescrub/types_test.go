package main

import (
	"testing"

	"go.opentelemetry.io/collector/component"
)

func typeOf(t *testing.T, name string) component.Type {
	t.Helper()
	typ, err := component.NewType(name)
	if err != nil {
		t.Fatal(err)
	}
	return typ
}
