// Package ui serves Sluice's web dashboard and customer portal at /ui/: plain HTML, CSS and
// JavaScript embedded in the binary (no build step, no CDN, nothing fetched from elsewhere). The page
// talks to the REST API with the key or portal token the user enters, which it keeps in the browser
// tab's sessionStorage; the server holds no UI session state.
//
// Portal links open /ui/#portal=<token>: the token travels in the URL fragment, which browsers never
// send to a server or put in a Referer header. The page moves it to sessionStorage and clears the
// fragment.
package ui
