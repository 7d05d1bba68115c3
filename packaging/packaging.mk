# Debian and RPM packages, built from `make install` (packaging/debian/rules,
# packaging/rpm/rapi.spec) out of a copy of the source tree.
# Included from the top-level Makefile.
#
#   make deb   rapi-server, rapi, librapi0, librapi-dev .debs into $(PKG_OUT),
#              then lintian (no error, no warning)
#   make rpm   the same four as RPMs into $(PKG_OUT), then rpmlint (no error)

PKG_OUT  := $(BUILD)/pkg
PKG_NAME := rapi-$(VERSION)
# The files of the tree as git sees them (tracked or new, never ignored ones
# such as build/), so a package holds exactly the sources.
PKG_TREE  = git ls-files -z --cached --others --exclude-standard | \
            tar --null -T - --ignore-failed-read -c -f -

.PHONY: deb rpm
deb:
	rm -rf $(PKG_OUT)/deb $(PKG_OUT)/*.deb $(PKG_OUT)/*.changes $(PKG_OUT)/*.buildinfo && mkdir -p $(PKG_OUT)/deb/$(PKG_NAME)
	$(PKG_TREE) | tar -x -C $(PKG_OUT)/deb/$(PKG_NAME)
	cp -a packaging/debian $(PKG_OUT)/deb/$(PKG_NAME)/debian
	cd $(PKG_OUT)/deb/$(PKG_NAME) && \
	  DEB_BUILD_OPTIONS="parallel=$$(nproc) noddebs" dpkg-buildpackage -b -us -uc
	mv $(PKG_OUT)/deb/*.deb $(PKG_OUT)/deb/*.changes $(PKG_OUT)/deb/*.buildinfo $(PKG_OUT)/
	rm -rf $(PKG_OUT)/deb
	lintian --fail-on error,warning \
	  $(PKG_OUT)/rapi_$(VERSION)_$$(dpkg-architecture -qDEB_HOST_ARCH).changes

RPM_TOP = $(abspath $(PKG_OUT))/rpm
rpm:
	rm -rf $(RPM_TOP) $(PKG_OUT)/*.rpm && mkdir -p $(RPM_TOP)/SOURCES
	$(PKG_TREE) | tar -x --transform 's,^,$(PKG_NAME)/,' -C $(RPM_TOP)/SOURCES
	tar -C $(RPM_TOP)/SOURCES -czf $(RPM_TOP)/SOURCES/$(PKG_NAME).tar.gz $(PKG_NAME)
	rm -rf $(RPM_TOP)/SOURCES/$(PKG_NAME)
	rpmbuild -bb --nodeps --define '_topdir $(RPM_TOP)' --define 'rapi_version $(VERSION)' \
	  --define "_smp_mflags -j$$(nproc)" packaging/rpm/rapi.spec
	mv $(RPM_TOP)/RPMS/*/*.rpm $(PKG_OUT)/
	rm -rf $(RPM_TOP)
	rpmlint -r packaging/rpm/rapi.rpmlintrc $(PKG_OUT)/*-$(VERSION)-*.rpm
